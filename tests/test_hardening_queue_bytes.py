"""The broker's queue is bounded in bytes, not only in tasks: the images waiting for a worker,
per client and for all clients together, with no worker at all or with the only one busy.
Beyond the bounds new tasks get "busy" naming the figure and the flag; the broker's memory
stays within about the bound."""
import os
import time

import psutil
import zmq
from cluster_helpers import FAST_HEARTBEAT_S, recv_within
from faults_helpers import wait_until
from test_hardening_slots import SilentWorker

from engine import protocol as P
from engine.errors import BusyError

QUEUE_MB, CLIENT_MB = 24, 12
IMAGE = os.urandom(2 * 2**20)  # never decoded: no worker runs it
SENT = 30  # per client: 60 MiB each, far past both bounds


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _flood(zctx, endpoint: str, name: str, keep: list) -> list:
    """``SENT`` tasks from one raw client; the answers that came back (the refusals). The
    client stays connected (the context's end closes it): a client that leaves takes its tasks."""
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    keep.append(sock)
    for n in range(SENT):
        sock.send_multipart(P.encode(P.Request(task_id=f"{name}{n}", pipeline="noop"), IMAGE))
    answers: list = []
    end_s = time.monotonic() + 2.0  # the refusals come at once; the admitted tasks wait for a worker
    while time.monotonic() < end_s or len(answers) < SENT // 2:
        sock.send_multipart(P.encode(P.Heartbeat()))  # alive: a client that leaves takes its tasks
        while sock.poll(int(FAST_HEARTBEAT_S * 500)):
            msg, _ = P.decode(recv_within(sock, 5))
            if not isinstance(msg, P.Heartbeat):
                answers.append(msg)
        assert time.monotonic() < end_s + 10, f"only {len(answers)} answers"
    return answers


def _busy(answers: list) -> list[str]:
    assert all(isinstance(m, P.Error) and m.code == BusyError.code for m in answers), answers[:3]
    return [m.message for m in answers]


def test_images_waiting_with_no_worker_are_bounded_per_client_and_in_all(cluster_factory, zctx):
    # Clients live 3 heartbeats of 5 s: the first two stay while the third floods (raw sockets, one at a time).
    cluster = cluster_factory(local_workers=0, extra=["--max-queue-mb", str(QUEUE_MB), "--client-max-queue-mb",
                                                      str(CLIENT_MB), "--heartbeat-interval-s", "5"]
                              ).start_broker(wait_slots=0)
    before_mib = _rss_mib(cluster.broker.pid)
    clients: list = []
    first, second, third = (_busy(_flood(zctx, cluster.front, name, clients)) for name in "abc")
    info = cluster.info()
    grew_mib = _rss_mib(cluster.broker.pid) - before_mib
    print(f"FIGURES queue bytes, no worker: 3 x {SENT} x 2 MiB sent; broker RSS +{grew_mib:.0f} MiB; "
          f"queued {info['queued_bytes'] / 2**20:.0f} MiB in {info['queue_depth']} tasks")
    per_client = CLIENT_MB // 2
    assert len(first) == len(second) == SENT - per_client  # each client's share: 6 images of 2 MiB
    assert "--client-max-queue-mb" in first[0] and "12.0 MiB" in first[0]
    assert len(third) == SENT  # both shares fill the broker's 24 MiB: the third client waits its turn
    assert "--max-queue-mb" in third[0]
    assert info["queued_bytes"] == 2 * per_client * len(IMAGE) and info["queue_depth"] == 2 * per_client
    # 180 MiB were sent; without the bound the broker held all of it.
    assert grew_mib < QUEUE_MB + 48, grew_mib


def test_images_queued_in_the_hot_path_behind_a_busy_worker_are_bounded(cluster_factory, zctx):
    cluster = cluster_factory(local_workers=0, extra=["--client-max-queue-mb", str(CLIENT_MB)]
                              ).start_broker(wait_slots=0)
    with SilentWorker(cluster.back, slots=1) as worker:
        wait_until(lambda: sum(w["free"] for w in cluster.info()["workers"]) == 1, timeout_s=10)
        refused = _busy(_flood(zctx, cluster.front, "h", []))
        info = cluster.info()
        assert len(worker.tasks) == 1
    # One task runs at the silent worker; 6 images (12 MiB) wait, in the hot path or the broker's queue.
    assert len(refused) == SENT - 1 - CLIENT_MB // 2, (len(refused), info["queue_depth"])
    assert info["queue_depth"] == CLIENT_MB // 2 and info["queued_bytes"] == CLIENT_MB * 2**20
