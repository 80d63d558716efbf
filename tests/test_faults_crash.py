"""Crashes, hangs and restarts with real processes; every task is counted.

In each test every submitted task must complete exactly once from the client's view
(the client drops a second answer for the same task id and counts it as a duplicate).
"""
import os
import signal
import time

from cluster_helpers import FAST_HEARTBEAT_S
from faults_helpers import Batch, add_worker, pool_pids, start, tally, wait_until, worker_pid_of


def _kill_all(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def test_pool_process_killed_mid_task_loses_nothing(cluster_factory):
    cluster = start(cluster_factory, (2,))
    supervisor = cluster.workers[0].pid
    with cluster.client() as client:
        batch = Batch.submit(client, 24)
        batch.wait_done(1)
        for victim in pool_pids(supervisor):  # both original processes, one after the other
            before = client.info()["requeued"]
            done = batch.done()
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: client.info()["requeued"] > before or batch.done() >= len(batch.futures), 30,
                       "the killed process's task to be requeued")
            batch.wait_done(done + 1)
        t = tally(client, batch, "pool process SIGKILLed mid-task (x2)")
        info = client.info()
    t.assert_exactly_once(24)
    assert info["requeued"] >= 2 and info["failed"] == 0
    print(f"FIGURES pool process SIGKILLed: broker requeued={info['requeued']}")
    assert len(pool_pids(supervisor)) == 2  # both replaced


def test_whole_worker_killed_loses_nothing(cluster_factory):
    cluster = start(cluster_factory, (1, 1))
    victim = cluster.workers[0]
    with cluster.client() as client:
        batch = Batch.submit(client, 20)
        batch.wait_done(2)
        _kill_all([victim.pid, *pool_pids(victim.pid)])  # the machine is gone: supervisor and pool at once
        t = tally(client, batch, "whole worker (supervisor + pool) SIGKILLed")
        info = client.info()
    t.assert_exactly_once(20)
    assert info["requeued"] >= 1, "the dead worker held no task: the test proved nothing"
    assert [w["pid"] for w in info["workers"]] == [cluster.workers[1].pid]


def test_worker_hung_with_sigstop_is_detected_and_its_tasks_reassigned(cluster_factory):
    cluster = start(cluster_factory, (1, 1))
    victim = cluster.workers[0]
    frozen = [victim.pid, *pool_pids(victim.pid)]
    try:
        with cluster.client() as client:
            batch = Batch.submit(client, 20)
            batch.wait_done(2)
            _kill_all(frozen, signal.SIGSTOP)
            stopped_s = time.monotonic()
            wait_until(lambda: victim.pid not in [w["pid"] for w in client.info()["workers"]], 30,
                       "the hung worker to be declared dead")
            detected_s = time.monotonic() - stopped_s
            t = tally(client, batch, "worker hung (SIGSTOP supervisor + pool)")
            info = client.info()
    finally:
        _kill_all(frozen, signal.SIGCONT)
    print(f"FIGURES SIGSTOP detection: {detected_s:.2f} s (heartbeat {FAST_HEARTBEAT_S} s, liveness 3 intervals)")
    t.assert_exactly_once(20)
    assert info["requeued"] >= 1
    # Declared dead after 3 silent intervals, checked once per interval: 4 intervals at most,
    # plus a margin for a loaded 2-core machine.
    assert detected_s <= 4 * FAST_HEARTBEAT_S + 1.5
    assert "missed heartbeats" in cluster.broker.stderr_text()


def test_broker_killed_and_restarted_mid_batch_loses_nothing(cluster_factory):
    cluster = start(cluster_factory, (2,))
    with cluster.client() as client:
        batch = Batch.submit(client, 24)
        batch.wait_done(4)
        cluster.broker.kill()
        done_at_kill = batch.done()
        cluster.start_broker(wait_slots=0)
        t = tally(client, batch, "broker SIGKILLed and restarted mid-batch")
        stats = client.stats
    assert done_at_kill < 24, "the batch finished before the broker was killed"
    t.assert_exactly_once(24)
    assert stats["resent"] >= 24 - done_at_kill - 2  # everything outstanding went to the new broker
    print(f"FIGURES broker restart: done at kill={done_at_kill} resent={stats['resent']}")


def test_workers_joining_and_leaving_during_a_run_lose_nothing(cluster_factory):
    cluster = start(cluster_factory, (1,))
    first = cluster.workers[0]
    with cluster.client() as client:
        batch = Batch.submit(client, 40, "sleep:ms=200|grayscale")
        batch.wait_done(3)
        second = add_worker(cluster, 1)
        batch.wait_done(10)
        first.signal(signal.SIGTERM)  # leaves politely: drains what it holds
        batch.wait_done(15)
        add_worker(cluster, 1)
        batch.wait_done(25)
        _kill_all([second.pid, *pool_pids(second.pid)])  # leaves abruptly
        t = tally(client, batch, "workers joining (x2) and leaving (SIGTERM, SIGKILL) during a run")
        served = {worker_pid_of(f.result()) for f in batch.futures}
    t.assert_exactly_once(40)
    assert first.popen.wait(30) == 0
    assert len(served) >= 3, served
