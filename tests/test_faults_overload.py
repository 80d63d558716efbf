"""Overload, bounded memory and graceful shutdown on SIGTERM: nothing dropped silently."""
import signal
import time

import psutil
import pytest
from faults_helpers import Batch, add_worker, start, tally, tiny_jpeg, wait_until


def test_overload_answers_busy_keeps_the_queue_bounded_and_drops_nothing(cluster_factory):
    cluster = start(cluster_factory, (1,), "--prefetch", "0", extra=["--max-queue", "4"])
    with cluster.client(retry_busy=False) as client, cluster.client() as watcher:
        batch = Batch.submit(client, 30, "sleep:ms=100|grayscale")
        depths = []
        deadline_s = time.monotonic() + 60
        while batch.done() < 30 and time.monotonic() < deadline_s:
            depths.append(watcher.info()["queue_depth"])
        t = tally(client, batch, "overload, retry_busy=False, --max-queue 4")
    assert t.lost == 0 and t.wrong == 0
    assert t.completed + t.failed["busy"] == 30 and t.failed["busy"] >= 20, t
    assert max(depths) <= 4, max(depths)
    print(f"FIGURES overload: max queue depth seen={max(depths)} over {len(depths)} samples")


def test_overload_with_busy_retries_slows_the_client_and_completes_everything(cluster_factory):
    cluster = start(cluster_factory, (1,), "--prefetch", "0", extra=["--max-queue", "4"])
    with cluster.client() as client:
        batch = Batch.submit(client, 30, "sleep:ms=50|grayscale")
        t = tally(client, batch, "overload, retry_busy=True, --max-queue 4")
        info = client.info()
    t.assert_exactly_once(30)
    assert info["busy"] >= 1 and info["completed"] == 30
    print(f"FIGURES overload with retries: busy answers={info['busy']}, all 30 completed")


def test_two_thousand_small_tasks_keep_broker_and_worker_memory_flat(cluster_factory, jpegs):
    cluster = start(cluster_factory, (2,))
    broker, worker = psutil.Process(cluster.broker.pid), psutil.Process(cluster.workers[0].pid)
    image = tiny_jpeg(16)
    rss = []
    with cluster.client() as client:
        for _ in range(4):
            results = list(client.map([image] * 500, "grayscale", window=64))
            assert len(results) == 500 and all(r.width == 16 for r in results)
            rss.append((broker.memory_info().rss >> 20, worker.memory_info().rss >> 20))
        info = client.info()
    assert info["completed"] == 2000 and info["queue_depth"] == 0 and info["in_flight"] == 0
    print(f"FIGURES mini soak: RSS MiB (broker, worker supervisor) after each 500 tasks: {rss}")
    assert rss[-1][0] - rss[0][0] <= 20 and rss[-1][1] - rss[0][1] <= 20, rss


def test_a_worker_sigterm_drains_what_it_holds_and_nothing_is_requeued(cluster_factory):
    cluster = start(cluster_factory, (1, 1))
    leaving = cluster.workers[0]
    with cluster.client() as client:
        batch = Batch.submit(client, 20)
        batch.wait_done(2)
        leaving.signal(signal.SIGTERM)
        t = tally(client, batch, "worker SIGTERM mid-batch")
        info = client.info()
    t.assert_exactly_once(20)
    assert leaving.popen.wait(30) == 0
    assert info["requeued"] == 0 and len(info["workers"]) == 1
    assert "draining" in leaving.stderr_text()


@pytest.mark.parametrize("drain_s", [60.0, 0.5])
def test_a_broker_sigterm_drains_and_loses_nothing(cluster_factory, drain_s):
    """A long drain finishes every admitted task; after a short one, the client resends the
    rest to the restarted broker."""
    cluster = start(cluster_factory, (2,), extra=["--drain-timeout-s", str(drain_s)])
    with cluster.client() as client:
        batch = Batch.submit(client, 16, "sleep:ms=300|grayscale")
        batch.wait_done(2)
        stopped = cluster.broker
        stopped.signal(signal.SIGTERM)
        assert stopped.popen.wait(drain_s + 30) == 0
        done_at_exit = batch.done()
        if done_at_exit < 16:
            cluster.start_broker(wait_slots=0)
        t = tally(client, batch, f"broker SIGTERM mid-batch, --drain-timeout-s {drain_s:g}")
    t.assert_exactly_once(16)
    print(f"FIGURES broker SIGTERM drain {drain_s:g} s: done when it exited={done_at_exit}/16")
    if drain_s > 10:
        assert done_at_exit == 16 and "unfinished" not in stopped.stderr_text()
    else:
        assert done_at_exit < 16 and "unfinished; clients will resend them" in stopped.stderr_text()


def test_a_broker_sigterm_with_no_worker_left_exits_at_once_and_its_tasks_are_resent(cluster_factory):
    """Draining waits for tasks that a worker may finish; with none connected nothing can, so the
    broker exits without its (here 120 s) drain, and the client resends to the next broker."""
    cluster = start(cluster_factory, (), extra=["--drain-timeout-s", "120"])
    with cluster.client() as client:
        batch = Batch.submit(client, 4)
        wait_until(lambda: client.info()["queue_depth"] == 4, timeout_s=30)
        stopped = cluster.broker
        stopped.signal(signal.SIGTERM)
        assert stopped.popen.wait(60) == 0  # well within the drain's 120 s: it did not wait for it
        assert "4 task(s) unfinished; clients will resend them" in stopped.stderr_text()
        cluster.start_broker(wait_slots=0)
        add_worker(cluster, 1)
        t = tally(client, batch, "broker SIGTERM with no worker")
    t.assert_exactly_once(4)
