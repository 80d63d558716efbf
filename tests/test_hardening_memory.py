"""Memory is bounded for every peer: a client that never reads its results, the compat
PUSH socket with nobody pulling, the client table."""
import base64
import json
import time

import cv2
import numpy as np
import psutil
import zmq
from cluster_helpers import FAST_HEARTBEAT_S, recv_within

from engine import protocol as P
from engine.errors import BusyError, TaskTimeout

UNREAD_MB = 8  # the broker refuses past 8 MiB waiting for one client and drops past 32 MiB


def _photo_jpeg(mib: float) -> bytes:
    """A JPEG of about ``mib`` MiB (noise does not compress); ``noop`` passes it through."""
    side = int((mib * 2**20 / 1.2) ** 0.5)
    rng = np.random.default_rng(1)
    return cv2.imencode(".jpg", rng.integers(0, 255, (side, side, 3), np.uint8),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _non_reader(zctx, endpoint: str) -> zmq.Socket:
    """A client that sends and heartbeats but never reads: tiny receive buffers so the
    results pile up in the broker, not here."""
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvhwm = 1
    sock.rcvbuf = 64 * 1024
    sock.connect(endpoint)
    return sock


def _settled(client, done, pid: int, timeout_s: float = 120.0) -> tuple[dict, float]:
    """INFO once ``done(info)`` holds, and the broker's peak RSS (MiB) seen meanwhile. Each INFO
    may wait long (the broker is busy with the flood on a loaded machine): a slow answer is
    asked again, never an error."""
    deadline_s, peak_mib = time.monotonic() + timeout_s, _rss_mib(pid)
    while True:
        try:
            info = client.info(timeout_s=15)
        except TaskTimeout:
            info = None
        peak_mib = max(peak_mib, _rss_mib(pid))
        if info is not None and done(info):
            return info, peak_mib
        assert time.monotonic() < deadline_s, f"the broker did not settle within {timeout_s:.0f} s: {info}"
        time.sleep(0.5)


def test_client_that_never_reads_cannot_grow_broker_memory(cluster_factory, zctx):
    cluster = cluster_factory(local_workers=2, extra=["--client-unread-mb", str(UNREAD_MB)]).start_broker()
    image = _photo_jpeg(1.0)
    before_mib = _rss_mib(cluster.broker.pid)
    greedy = _non_reader(zctx, cluster.front)
    sent = 0
    with cluster.client() as other:
        for round_ in range(10):
            for n in range(120 if round_ == 0 else 30):  # a first burst all admitted at once: some get dropped
                # flip decodes and encodes (tens of ms): the burst is all admitted before its first result
                # is back, so results pile up past the drop limit however fast the data path is.
                greedy.send_multipart(P.encode(P.Request(task_id=f"g{round_}-{n}", pipeline="flip"), image))
                sent += 1
            greedy.send_multipart(P.encode(P.Heartbeat()))
            # Others are served all along.
            assert other.process(image, "noop", timeout_s=60).meta["width"] > 0
            time.sleep(FAST_HEARTBEAT_S)
        # Wait for the state asserted below, not a time: every task of the greedy client answered
        # (its results waiting, dropped, or refused busy); on a loaded machine that takes a while.
        info, peak_mib = _settled(other, lambda i: i["in_flight"] == 0 and i["queue_depth"] == 0,
                                  cluster.broker.pid)
    grew_mib = peak_mib - before_mib
    unread = info["unread"]["front"]
    print(f"FIGURES non-reading client: {sent} x {len(image) / 2**20:.2f} MiB sent; broker RSS {before_mib:.0f} -> "
          f"{peak_mib:.0f} MiB; waiting {unread['bytes'] / 2**20:.1f} MiB, dropped {unread['dropped']}, "
          f"refused busy {info['busy']}")
    assert info["busy"] > 0 and unread["dropped"] > 0
    assert unread["bytes"] <= 4 * UNREAD_MB * 2**20 + len(image) * 2
    # The drop limit (32 MiB), libzmq's pipe (32 results) and its socket buffers, with room for the
    # allocator: without the bound the broker kept all ~400 MiB of results.
    assert grew_mib < 4 * UNREAD_MB + 32 * len(image) / 2**20 + 64, grew_mib
    assert cluster.broker.alive()


def test_compat_push_results_with_nobody_pulling_are_bounded(cluster_factory, zctx):
    cluster = cluster_factory(local_workers=2, compat=True,
                              extra=["--client-unread-mb", str(UNREAD_MB)]).start_broker()
    image = _photo_jpeg(0.5)
    body = json.dumps({"task_id": 1, "task": "noop", "image": base64.b64encode(image).decode()}).encode()
    before_mib = _rss_mib(cluster.broker.pid)
    push = zctx.socket(zmq.PUSH)
    push.linger = 0
    push.connect(f"tcp://127.0.0.1:{cluster.compat_ports['pull']}")
    count = 400  # 400 results of ~0.7 MiB of JSON each; nobody PULLs them
    for _ in range(count):
        push.send(body)
    with cluster.client() as other:
        info, _ = _settled(other, lambda i: i["received"] >= count and i["in_flight"] == 0 and i["queue_depth"] == 0,
                           cluster.broker.pid)
        assert other.process(image, "noop", timeout_s=60).meta["width"] > 0
    grew_mib = _rss_mib(cluster.broker.pid) - before_mib
    unread = info["unread"]["compat"]
    print(f"FIGURES compat PUSH without a reader: RSS grew {grew_mib:.0f} MiB; waiting "
          f"{unread['bytes'] / 2**20:.1f} MiB, dropped {unread['dropped']}, refused busy {info['busy']}")
    assert unread["bytes"] <= 4 * UNREAD_MB * 2**20 + 2 * len(body)
    assert unread["dropped"] + info["busy"] > 0
    # Before the bound every result was kept (~280 MiB); now the drop limit, plus what
    # libzmq and the allocator hold between heartbeats (see engine/memtrim.py).
    assert grew_mib < 4 * UNREAD_MB + 32 * len(body) / 2**20 + 64, grew_mib


def test_clients_beyond_the_table_limit_are_told_busy_and_the_others_are_served(cluster_factory, zctx, jpegs):
    cluster = cluster_factory(local_workers=1, extra=["--max-clients", "3"]).start_broker()
    # wait_ready's own short-lived clients expire after 3 heartbeat intervals
    time.sleep(4 * FAST_HEARTBEAT_S)
    socks = []
    for n in range(4):
        sock = zctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(cluster.front)
        sock.send_multipart(P.encode(P.Request(task_id=f"t{n}", pipeline="grayscale"), jpegs["coins.jpg"]))
        socks.append(sock)
        time.sleep(0.2)
    answers = [P.decode(recv_within(s, 30))[0] for s in socks]
    assert [type(a).__name__ for a in answers[:3]] == ["Reply"] * 3
    assert isinstance(answers[3], P.Error) and answers[3].code == BusyError.code
    assert "clients" in answers[3].message
