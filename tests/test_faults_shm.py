"""Same-host payloads through shared memory, with real brokers, workers and clients: who gets
them, who does not, and that no segment outlives any fault (counted in /dev/shm)."""
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import psutil
import pytest
import zmq
from cluster_helpers import FAST_HEARTBEAT_S, Proc, recv_within
from faults_helpers import Batch, broker_idle, pool_pids, start, tally, wait_until

from engine import protocol as P
from engine import shm

pytestmark = pytest.mark.skipif(not shm.available(), reason="no /dev/shm here (or ENGINE_NO_SHM is set)")


def _image(seed: int) -> tuple[bytes, np.ndarray]:
    """A 320x240 PNG of noise (about 230 KB: well over the size that goes by reference)."""
    img = np.random.default_rng(seed).integers(0, 255, (240, 320, 3), np.uint8)
    return cv2.imencode(".png", img)[1].tobytes(), img


def _same_as_opencv(results, images) -> bool:
    return all(np.array_equal(cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_UNCHANGED),
                              cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)) for r, (_, img) in zip(results, images))


def _ours() -> set[str]:
    """This engine's segments in /dev/shm now, but those of live processes outside this test
    (another engine on the same machine: not this test's to judge)."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    return {n for n in os.listdir(shm.SHM_DIR) if n.startswith("engine-") and _owner(n, mine)}


def _owner(name: str, mine: set[int]) -> bool:
    """The segment is this test's: its process is one of ours, or dead (left behind by a kill)."""
    pid_text = name.split("-")[2] if name.startswith("engine-key-") else name.split("-")[1]
    return not pid_text.isdigit() or int(pid_text) in mine or not psutil.pid_exists(int(pid_text))


def test_images_of_a_client_on_the_broker_s_host_go_through_shared_memory(cluster):
    images = [_image(i) for i in range(12)]
    with cluster.client() as client:
        wait_until(lambda: client.info() and client.shared_memory, 10, "the broker's offer and our proof")
        results = list(client.map([data for data, _ in images], "grayscale|png", window=4))
        info = client.info()
        stats = client.stats
        prefix = client._core.segments.prefix
        assert len([n for n in _ours() if n.startswith(prefix)]) <= shm.POOL_FILES  # kept for reuse, bounded
    assert not [n for n in _ours() if n.startswith(prefix)]  # all gone with the client
    assert _same_as_opencv(results, images)
    assert stats["by_reference"] == 12 and stats["completed"] == 12
    assert info["shared_memory"]["clients"] >= 1 and info["shared_memory"]["workers"] == 2


def _remote_like_worker(cluster) -> None:
    """A worker that cannot read this host's shared memory, as one on another machine."""
    cluster.workers.append(Proc(["-m", "engine.worker", "--connect", cluster.back, "--processes", "1",
                                 "--heartbeat-interval-s", str(FAST_HEARTBEAT_S)], env={shm.ENV_NO_SHM: "1"}))


def test_beside_a_worker_that_cannot_read_shared_memory_clients_are_not_offered_it(cluster_factory):
    cluster = cluster_factory(local_workers=1).start_broker()
    _remote_like_worker(cluster)
    cluster.wait_ready(4)
    images = [_image(100 + i) for i in range(6)]
    with cluster.client() as client:
        results = list(client.map([data for data, _ in images], "grayscale|png", window=3))
        info = client.info()
        assert client.stats["by_reference"] == 0  # else the other worker would sit idle beside its queue
    assert _same_as_opencv(results, images)
    assert info["shared_memory"]["workers"] == 1
    assert len({r.worker for r in results}) == 2  # both workers served the client (LRU over their slots)


def test_a_task_by_reference_for_a_worker_that_cannot_read_it_carries_the_image(cluster_factory, zctx):
    """A task sent by reference that only another host's worker can run (it joined meanwhile):
    the broker reads the segment and sends the bytes."""
    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)
    _remote_like_worker(cluster)
    cluster.wait_ready(2)
    [key] = [n for n in _ours() if n.startswith(f"engine-key-{cluster.broker.pid}-")]
    segs = shm.Segments()
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = b"c-raw-client"
    sock.connect(cluster.front)
    try:
        sock.send_multipart(P.encode(P.Heartbeat(shm=shm.prove(key, b"c-raw-client"))))
        images = [_image(300 + i) for i in range(3)]
        for i, (data, _) in enumerate(images):
            sock.send_multipart(P.request_frames(f"t{i}", "grayscale|png", None, segs.put(data).encode(), ref=True))
        results = {}
        while len(results) < 3:
            msg, payloads = P.decode(recv_within(sock))
            if isinstance(msg, P.Reply):
                assert "shm" not in msg.meta  # the worker got bytes and answered bytes
                results[msg.task_id] = payloads[0]
            else:
                assert isinstance(msg, P.Heartbeat), msg
        for i, (_, img) in enumerate(images):
            out = cv2.imdecode(np.frombuffer(results[f"t{i}"], np.uint8), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(out, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    finally:
        segs.close()


def test_a_broker_with_shared_memory_off_offers_none(cluster_factory):
    cluster = cluster_factory(local_workers=1, extra=["--no-shm"]).start_broker()
    images = [_image(200 + i) for i in range(3)]
    with cluster.client() as client:
        results = list(client.map([data for data, _ in images], "grayscale|png"))
        info = client.info()
        assert client.stats["by_reference"] == 0
    assert _same_as_opencv(results, images) and info["shared_memory"] is None


def _answer(sock: zmq.Socket):
    """The next message that is not a heartbeat."""
    while True:
        msg, _ = P.decode(recv_within(sock))
        if not isinstance(msg, P.Heartbeat):
            return msg


def test_a_client_that_never_proved_its_host_cannot_name_a_segment(cluster, zctx):
    victim = shm.Segments()
    secret = victim.put(b"another client's image")
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(cluster.front)
    try:

        def offered() -> bool:  # the broker names its key once every worker proved it (a loaded machine: later)
            sock.send_multipart(P.encode(P.Heartbeat()))
            beat, _ = P.decode(recv_within(sock))
            return isinstance(beat, P.Heartbeat) and bool(beat.shm)

        wait_until(offered, 30, "the broker's offer of shared memory")
        sock.send_multipart(P.request_frames("t1", "grayscale", None, secret.encode(), ref=True))
        msg = _answer(sock)
        assert isinstance(msg, P.Error) and msg.code == "bad_message" and "proven" in msg.message
        sock.send_multipart(P.encode(P.Heartbeat(shm="0" * 64)))  # a guess is no proof
        sock.send_multipart(P.request_frames("t2", "grayscale", None, secret.encode(), ref=True))
        msg = _answer(sock)
        assert isinstance(msg, P.Error) and msg.task_id == "t2" and msg.code == "bad_message"
    finally:
        victim.close()


CLIENT_SCRIPT = """
import sys, time
from engine import Client
from faults_helpers import tiny_jpeg
c = Client(sys.argv[1], heartbeat_interval_s=0.5, timeout_s=60)
futures = [c.submit(tiny_jpeg(16 + i % 50), "sleep:ms=200|grayscale") for i in range(200)]
print("submitted", flush=True)
time.sleep(60)
"""


def test_no_segment_outlives_a_killed_client_pool_process_worker_or_broker(cluster_factory, monkeypatch):
    """Every image goes by reference here (ENGINE_SHM_MIN_BYTES=0), through each fault of the
    fault suite in turn; /dev/shm holds what it held before once the engine has settled."""
    monkeypatch.setattr(shm, "MIN_BYTES", 0)
    before = _ours()
    cluster = start(cluster_factory, (2, 1))
    tests_dir = os.path.dirname(__file__)
    # 1. A client killed mid-batch: its inputs wait at the broker and the workers.
    child = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, cluster.front], cwd=tests_dir, text=True,
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": tests_dir,
                                                          shm.ENV_MIN_BYTES: "0"})
    assert child.stdout.readline().strip() == "submitted"
    prefix = f"engine-{child.pid}-"
    wait_until(lambda: any(n.startswith(prefix) for n in _ours()), 30, "the child's segments")
    time.sleep(0.5)
    child.kill()
    child.wait(10)
    orphans = len([n for n in _ours() if n.startswith(prefix)])
    killed_s = time.monotonic()
    wait_until(lambda: not any(n.startswith(prefix) for n in _ours()), 30, "the dead client's segments to go")
    print(f"FIGURES shared memory: before the faults {len(before)} segment(s); a SIGKILLed client left {orphans}, "
          f"gone {time.monotonic() - killed_s:.1f} s later")
    with cluster.client() as client:
        broker_idle(client)
        # 2. A pool process killed mid-task, then 3. a whole worker (supervisor and pool) killed.
        batch = Batch.submit(client, 16)
        batch.wait_done(1)
        os.kill(pool_pids(cluster.workers[0].pid)[0], signal.SIGKILL)
        batch.wait_done(4)
        victim = cluster.workers[1]
        for pid in [victim.pid, *pool_pids(victim.pid)]:
            os.kill(pid, signal.SIGKILL)
        tally(client, batch, "shared memory: pool process, then a whole worker, SIGKILLed").assert_exactly_once(16)
        sent = client.stats["by_reference"]
        assert sent > 0  # (while a replacement process has not proven its host, clients are not offered it)
        # 4. The broker SIGKILLed mid-batch and started again: the client resends by reference.
        batch = Batch.submit(client, 12)
        batch.wait_done(1)
        cluster.broker.kill()
        cluster.broker = Proc(cluster.broker_args())
        tally(client, batch, "shared memory: broker SIGKILLed and restarted").assert_exactly_once(12)
        assert client.stats["by_reference"] > sent
    # The client closed: its own segments are gone at once; the dead broker's key at the new one's start.
    left = _ours() - before
    assert not [n for n in left if not n.startswith("engine-key-")], left
    cluster.stop()
    wait_until(lambda: not (_ours() - before), 10, "the brokers' keys to go")
    print(f"FIGURES shared memory: after the faults {len(_ours())} segment(s) (before: {len(before)}); "
          f"{client.stats['by_reference']} of 28 tasks by reference")
