"""One heartbeat contract: the broker announces its interval and liveness in every heartbeat,
and workers, clients and the web gateway started with their defaults follow them.

The peers are real (a worker process, the sync client, the gateway's asyncio link); the
broker is a real broker process, or a raw ROUTER that plays one so the test can see each
peer's heartbeats as they arrive and choose when the broker falls silent.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time

import msgpack
import pytest
import zmq
from cluster_helpers import Proc, recv_within
from faults_helpers import tiny_jpeg

from engine import protocol as P

ANNOUNCED_S = 0.5  # the fake broker's interval: a quarter of the peers' default
LIVENESS = 20  # ... and its liveness: 10 s of silence, beyond the peers' default 6 s


def _fake_broker(zctx) -> tuple[zmq.Socket, str]:
    sock = zctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"


def _beat() -> list[bytes]:
    """A broker's heartbeat, header keys spelt out: what any version of a peer reads off the wire."""
    head = {"v": P.PROTOCOL_VERSION, "t": P.HEARTBEAT, "sid": "fakebroker01", "ivl": ANNOUNCED_S, "live": LIVENESS}
    return [msgpack.packb(head, use_bin_type=True)]


def _listen(sock: zmq.Socket, seconds: float, *, answer: bool = True) -> list[tuple[bytes, float, P.Message]]:
    """Every message for ``seconds`` as (peer, arrival, message); with ``answer`` each peer that
    spoke gets a heartbeat at the announced interval, as a broker beats."""
    out: list[tuple[bytes, float, P.Message]] = []
    peers: set[bytes] = set()
    next_beat_s = 0.0
    until_s = time.monotonic() + seconds
    while (now_s := time.monotonic()) < until_s:
        if answer and now_s >= next_beat_s:
            for peer in peers:
                sock.send_multipart([peer, *_beat()])
            next_beat_s = now_s + ANNOUNCED_S
        wait_s = min(until_s, next_beat_s if answer else until_s) - now_s
        if sock.poll(max(1, int(wait_s * 1000))):
            peer, *frames = sock.recv_multipart()
            msg, _ = P.decode(frames)
            out.append((peer, time.monotonic(), msg))
            if answer and peer not in peers:
                peers.add(peer)
                sock.send_multipart([peer, *_beat()])  # its first answer, as the broker's after READY
    return out


def _beat_gaps(messages, peer: bytes) -> list[float]:
    times = [t for p, t, m in messages if p == peer and isinstance(m, P.Heartbeat) and m.shm is None]
    return [b - a for a, b in itertools.pairwise(times)]


def test_heartbeats_announce_the_pace_and_old_peers_ignore_it():
    msg, _ = P.decode(P.encode(P.Heartbeat(sender="b", interval_s=0.5, liveness=4)))
    assert (msg.interval_s, msg.liveness) == (0.5, 4)
    pace = P.Pace()
    assert (pace.interval_s, pace.liveness, pace.silence_s) == (2.0, 3, 6.0)
    assert pace.follow(msg) == P.Pace(0.5, 4) and pace.follow(msg).silence_s == 2.0
    old, _ = P.decode(P.encode(P.Heartbeat(sender="b")))  # an older broker announces nothing
    assert pace.follow(old) is pace
    for bad in (0.0, -1.0, float("nan"), float("inf"), 1e9):
        assert pace.follow(P.Heartbeat(interval_s=bad, liveness=0)) is pace
    with pytest.raises(P.ProtocolError):
        P.decode(P.encode(P.Heartbeat(interval_s=True)))


@pytest.mark.timeout(120)
def test_a_worker_with_default_heartbeats_beats_at_the_brokers_pace_and_waits_its_liveness(zctx):
    sock, address = _fake_broker(zctx)
    worker = Proc(["-m", "engine.worker", "--connect", address, "--processes", "1", "--no-learned",
                   "--log-level", "info"])
    try:
        first = recv_within(sock, 60)  # the supervisor's or the pool process's READY
        sock.send_multipart([first[0], *_beat()])
        heard = _listen(sock, 4.0)
        ready = {p for p, _, m in heard if isinstance(m, P.Ready)} | {first[0]}
        assert len(ready) == 2, f"expected the supervisor and one pool process, got {ready}"
        for peer in ready:
            gaps = _beat_gaps(heard, peer)[1:]  # from its second beat on: the first may predate our answer
            assert len(gaps) >= 3 and max(gaps) < 1.2, f"{peer!r} beats every {gaps} s, not every {ANNOUNCED_S} s"
        # The broker falls silent for longer than the worker's own liveness (6 s), shorter than the
        # broker's (10 s): the worker must not give up on it and register again.
        quiet = _listen(sock, 7.5, answer=False)
        again = [p for p, _, m in quiet if isinstance(m, P.Ready)]
        assert not again, f"the worker presumed the broker gone after {7.5} s of silence: {worker.stderr_text()}"
        assert "broker silent" not in worker.stderr_text()
    finally:
        worker.stop()


def test_a_client_with_default_heartbeats_beats_at_the_brokers_pace_and_waits_its_liveness(zctx):
    from engine import Client

    sock, address = _fake_broker(zctx)
    with Client(address, timeout_s=30) as client:
        heard = _listen(sock, 3.0)
        peers = {p for p, _, _ in heard}
        assert len(peers) == 1
        gaps = _beat_gaps(heard, peers.pop())[1:]
        assert len(gaps) >= 3 and max(gaps) < 1.0, f"the client beats every {gaps} s, not every {ANNOUNCED_S} s"
        _listen(sock, 7.0, answer=False)  # silent past the client's own liveness (6 s), within the broker's
        future = client.submit(tiny_jpeg(16), "grayscale")
        sent = [m for _, _, m in _listen(sock, 1.5, answer=False) if isinstance(m, P.Request)]
        assert sent, "the client presumed the broker gone and held its task"
        future.cancel()


def test_the_web_gateways_link_follows_the_brokers_pace(zctx):
    from engine.web.link import EngineLink
    from engine.web.settings import WebSettings

    sock, address = _fake_broker(zctx)
    heard: list = []
    listener = threading.Thread(target=lambda: heard.extend(_listen(sock, 3.5)))
    listener.start()

    async def main() -> None:
        link = EngineLink(WebSettings(broker=address))  # the gateway's defaults, as `python -m engine.web`
        await link.start()
        try:
            await asyncio.sleep(3.5)
        finally:
            await link.close()

    try:
        asyncio.run(main())
    finally:
        listener.join(10)
    gaps = _beat_gaps(heard, heard[0][0])[1:]
    assert len(gaps) >= 3 and max(gaps) < 1.0, f"the gateway beats every {gaps} s, not every {ANNOUNCED_S} s"


@pytest.mark.timeout(150)
def test_a_broker_with_fast_heartbeats_keeps_a_worker_and_a_client_started_with_defaults(cluster_factory):
    from engine import Client

    cluster = cluster_factory(local_workers=0)  # the broker beats every 0.5 s (conftest.FAST_HEARTBEAT_S)
    assert "0.5" in cluster.broker_args()[cluster.broker_args().index("--heartbeat-interval-s") + 1]
    cluster.start_broker(wait_slots=0)
    worker = Proc(["-m", "engine.worker", "--connect", cluster.back, "--processes", "1", "--no-learned",
                   "--log-level", "info"])  # its own interval: the default 2 s
    cluster.workers.append(worker)
    cluster.wait_ready(2)
    image = tiny_jpeg(32)
    with Client(cluster.front, timeout_s=60) as client:  # the client's defaults too
        assert client.process(image, "grayscale").width == 32
        time.sleep(4.0)  # eight of the broker's intervals; two of its peers' own
        assert client.process(image, "grayscale").width == 32
    log = cluster.broker.stderr_text()
    assert "declared dead" not in log, log[-3000:]
    assert "broker silent" not in worker.stderr_text()
