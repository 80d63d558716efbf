"""Cancellation and clients that go away: their tasks leave the broker, nothing leaks."""
import subprocess
import sys
import textwrap
import time

from cluster_helpers import FAST_HEARTBEAT_S
from faults_helpers import Batch, broker_idle, start, tiny_jpeg, wait_until

from engine.errors import BrokerUnavailable

SLOW = "sleep:ms=500|grayscale"


def _holds(client, queued: int, in_flight: int):
    return lambda: (lambda i: i["queue_depth"] == queued and i["in_flight"] == in_flight)(client.info())


def test_cancel_removes_queued_tasks_from_the_broker_and_unstarted_ones_from_the_worker(cluster_factory):
    cluster = start(cluster_factory, (1,))  # one process, one task waiting at hand (prefetch 1)
    with cluster.client() as client:
        batch = Batch.submit(client, 10, SLOW)
        wait_until(_holds(client, 8, 2), 30, "8 tasks queued, 2 at the worker")
        assert all(f.cancel() for f in batch.futures[2:])
        wait_until(_holds(client, 0, 2), 10, "the queued tasks to leave the broker")
        assert batch.futures[1].cancel()  # waiting at the worker, not started
        wait_until(_holds(client, 0, 1), 10, "the prefetched task to be cancelled")
        assert batch.futures[0].result(30).width == 16
        info = broker_idle(cluster)
        cluster.wait_ready(2)  # every slot back
    assert info["cancelled"] == 9 and info["completed"] == 1
    assert "cancelled before it started" in cluster.workers[0].stderr_text()
    print(f"FIGURES cancel: submitted=10 cancelled=9 (8 queued at the broker, 1 waiting at the worker) "
          f"completed={info['completed']}")


def test_cancelling_a_running_task_stops_its_process_and_frees_the_worker(cluster_factory):
    cluster = start(cluster_factory, (1,))  # one process: while it sleeps, nothing else can run
    with cluster.client() as client:
        assert client.submit(tiny_jpeg(8), "grayscale").result(60).width == 8  # the process is up and idle
        running = client.submit(tiny_jpeg(16), "sleep:ms=60000|grayscale")
        wait_until(_holds(client, 0, 1), 30, "the long task to reach the worker")
        cancelled_s = time.monotonic()
        assert running.cancel()
        wait_until(lambda: "was killed" in cluster.workers[0].stderr_text(), 30, "the busy process to be killed")
        # Without the kill, this task would wait behind the 60 s sleep; the client's own timeout says so.
        after = client.submit(tiny_jpeg(24), "grayscale").result(30)
        after_s = time.monotonic() - cancelled_s
        info = broker_idle(client, 10)
    log = cluster.workers[0].stderr_text()
    assert after.width == 24
    assert "cancelled while running" in log and "after its task was cancelled and was killed" in log
    assert info["cancelled"] == 1 and info["completed"] == 2 and info["requeued"] == 0
    print(f"FIGURES cancel running: the 60 s task's process killed; the next task answered "
          f"{after_s:.2f} s after cancel(); cancelled={info['cancelled']} completed={info['completed']}")


def test_aborting_a_map_cancels_what_it_has_in_flight(cluster_factory):
    cluster = start(cluster_factory, (1,))
    with cluster.client() as client:
        results = client.map((tiny_jpeg(16 + i) for i in range(30)), SLOW, window=8)
        assert next(results).width == 16
        results.close()  # the caller stops iterating: the 7 others in flight are cancelled
        info = broker_idle(cluster, 10)
        cluster.wait_ready(2)
        info = client.info()
    assert info["cancelled"] == 7
    assert info["completed"] <= 2  # the first, and at most the one that was running
    print(f"FIGURES map abort: 8 submitted of 30, 1 consumed, cancelled={info['cancelled']}, "
          f"completed={info['completed']}")


def test_a_client_closing_with_tasks_in_flight_leaves_nothing_behind(cluster_factory):
    cluster = start(cluster_factory, (1,))
    client = cluster.client()
    batch = Batch.submit(client, 20, SLOW)
    batch.wait_done(1)
    client.close()
    errors = [f.exception(10) for f in batch.futures[1:]]
    info = broker_idle(cluster, 10)
    assert sum(isinstance(e, BrokerUnavailable) for e in errors) >= 17  # none silently left pending
    assert info["clients"] == 1 and info["completed"] <= 3  # the one asking
    cluster.wait_ready(2)


def test_a_killed_client_process_has_its_tasks_dropped(cluster_factory):
    cluster = start(cluster_factory, (1,))
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, "tests")
        from engine import Client
        from faults_helpers import tiny_jpeg
        client = Client("{cluster.front}", heartbeat_interval_s={FAST_HEARTBEAT_S})
        futures = [client.submit(tiny_jpeg(16), "{SLOW}") for _ in range(20)]
        print("submitted", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "submitted"
        with cluster.client() as watcher:
            wait_until(lambda: watcher.info()["queue_depth"] >= 10, 30, "the client's tasks to be queued")
            proc.kill()
            proc.wait(10)
            broker_idle(watcher, 10)  # its heartbeats stop: after 3 intervals it is gone (and its tasks)
            # (or sooner: a broker's sweep may remove a dead client's shared-memory inputs first, and
            # its tasks then fail at once; the client itself is forgotten after 3 silent intervals)
            wait_until(lambda: watcher.info()["clients"] == 1, 10, "only the watcher to be left")
            cluster.wait_ready(2)
            info = watcher.info()
    finally:
        proc.kill()
        proc.wait(10)
    # It ran only what it started during the 3 silent intervals before the broker gave up on it.
    assert info["completed"] <= 10 and info["queue_depth"] == 0 and info["in_flight"] == 0
    print(f"FIGURES killed client: 20 submitted, dropped by the broker; completed={info['completed']}")
