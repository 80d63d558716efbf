"""Every slot comes back: a result over the message limit, a worker that never answers."""
import threading
import time

import cv2
import numpy as np
import zmq
from cluster_helpers import FAST_HEARTBEAT_S
from faults_helpers import add_worker, tiny_jpeg, wait_until

from engine import protocol as P
from engine.errors import ResultTooLarge


def _noise_jpeg(side: int) -> bytes:
    rng = np.random.default_rng(side)
    return cv2.imencode(".jpg", rng.integers(0, 255, (side, side, 3), np.uint8))[1].tobytes()


def test_results_over_the_message_limit_are_refused_clearly_and_every_slot_comes_back(cluster_factory):
    cluster = cluster_factory(local_workers=1, extra=["--max-message-mb", "1"]).start_broker()
    big = _noise_jpeg(256)  # small input; as a 1600 px PNG of noise it is several MiB
    with cluster.client(timeout_s=30) as client:
        futures = [client.submit(big, "resize:width=1600,height=1600,interpolation=nearest|png:compression=0")
                   for _ in range(4)]  # more than the worker's slots (1 process: 2)
        errors = [f.exception(30) for f in futures]
        small = client.process(tiny_jpeg(32), "grayscale")
        info = client.info()
    assert all(isinstance(e, ResultTooLarge) for e in errors), errors
    assert "--max-message-mb" in errors[0].message
    assert errors[0].meta["max_message_bytes"] == 2**20 and errors[0].meta["result_bytes"] > 2**20
    assert small.width == 32
    assert sum(w["free"] for w in info["workers"]) == 2 and info["in_flight"] == 0


class SilentWorker:
    """Announces slots and heartbeats like a worker, but never answers a task."""

    def __init__(self, endpoint: str, slots: int) -> None:
        self.endpoint, self.slots = endpoint, slots
        self.tasks: list[str] = []
        self.disconnected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)  # the only user of its socket

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(self.endpoint)
        sock.send_multipart(P.encode(P.Ready(capacity=self.slots, host="silent")))
        try:
            while not self._stop.is_set():
                sock.send_multipart(P.encode(P.Heartbeat()))
                while sock.poll(int(FAST_HEARTBEAT_S * 500)):
                    msg, _ = P.decode(sock.recv_multipart())
                    if isinstance(msg, P.Request):
                        self.tasks.append(msg.task_id)
                    elif isinstance(msg, P.Disconnect):
                        self.disconnected.set()
        finally:
            sock.close(0)
            ctx.term()


def test_a_worker_that_never_answers_loses_its_tasks_after_the_lease_and_is_dropped(cluster_factory):
    cluster = cluster_factory(local_workers=0, extra=["--task-lease-s", "2"]).start_broker(wait_slots=0)
    with SilentWorker(cluster.back, slots=4) as silent:
        cluster.wait_ready(4)
        with cluster.client(timeout_s=60) as client:
            futures = [client.submit(tiny_jpeg(16 + n), "grayscale") for n in range(4)]
            wait_until(lambda: len(silent.tasks) == 4, 30, "the silent worker to take every task")
            add_worker(cluster, 1)
            results = [f.result(60) for f in futures]
            wait_until(silent.disconnected.is_set, 30, "the silent worker to be dropped")
            info = client.info()
    assert [r.width for r in results] == [16, 17, 18, 19]
    assert info["leases_expired"] >= 3 and info["requeued"] >= 3
    assert "silent" not in [w["host"] for w in info["workers"]]
    log = cluster.broker.stderr_text()
    assert "did not answer within its lease" in log and "leases expire in a row: dropped" in log


def test_a_worker_that_registers_twice_is_counted_once(cluster_factory, zctx):
    """A worker that reconnects sends READY on connecting and again when the broker, which
    does not know it yet, asks it to: its slots must not add up (seen after a broker restart)."""
    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = b"twice"
    sock.connect(cluster.back)
    try:
        for _ in range(3):
            sock.send_multipart(P.encode(P.Ready(capacity=2, host="twice", pid=1, processes=1)))
        sock.send_multipart(P.encode(P.Ready(capacity=1)))  # an increment (a slot freed): still counted
        time.sleep(0.5)
        info = cluster.info()
    finally:
        sock.close(0)
    assert info["workers_total"] == 1 and info["slots_free"] == 3, info["workers"]
