"""Issue 2's fault cases: a pool process killed, the broker restarted; nothing lost."""
import concurrent.futures as cf
import os
import re
import signal
import time

import cv2
import numpy as np


def _size(data: bytes) -> tuple[int, int]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return img.shape[1], img.shape[0]


def _wait(futures, timeout_s: float = 120.0) -> list:
    _done, not_done = cf.wait(futures, timeout=timeout_s)
    assert not not_done, f"{len(not_done)} task(s) never completed"
    return [f.result() for f in futures]  # raises if any task failed


def _moved(info: dict) -> int:
    """Tasks taken from a dead process: the one it ran (requeued, an attempt) and those waiting at it (reassigned)."""
    return info["requeued"] + info["reassigned"]


def test_worker_process_killed_mid_batch_loses_no_task(cluster, jpegs):
    photos = [jpegs["retina.jpg"], jpegs["hubble_deep_field.jpg"]] * 20  # slow enough to be caught mid-task
    slots = sum(w["free"] for w in cluster.info()["workers"])
    with cluster.client() as client:
        futures = [client.submit(d, "edge") for d in photos]
        first = futures[0].result(60)
        pid = int(first.worker.rsplit(":", 1)[1])
        for _ in range(3):  # kill until a task was running in the victim (it nearly always is)
            os.kill(pid, signal.SIGKILL)
            time.sleep(1.0)
            if _moved(client.info()) >= 1 or futures[-1].done():
                break
            pid = next(int(f.result().worker.rsplit(":", 1)[1]) for f in futures if f.done()
                       and int(f.result().worker.rsplit(":", 1)[1]) != pid)
        results = _wait(futures)
        info = client.info()
        stats = client.stats
    assert [(r.width, r.height) for r in results] == [_size(d) for d in photos]
    assert _moved(info) >= 1, "the kill never hit a process holding a task"
    assert info["completed"] == len(photos) and info["failed"] == 0
    assert stats["completed"] == len(photos) and stats["failed"] == 0
    assert sum(w["free"] for w in cluster.wait_ready(slots)["workers"]) == slots  # replaced, all slots back


def test_broker_restarted_mid_batch_loses_no_task(cluster_factory, jpegs):
    cluster = cluster_factory(local_workers=0)
    cluster.start_broker(wait_slots=0)
    cluster.add_worker(2)
    cluster.wait_ready(2)
    photos = list(jpegs.values()) * 5
    with cluster.client() as client:
        futures = [client.submit(d, "edge") for d in photos]
        deadline_s = time.monotonic() + 60
        while sum(f.done() for f in futures) < 5 and time.monotonic() < deadline_s:
            time.sleep(0.01)
        cluster.broker.kill()
        done_at_kill = sum(f.done() for f in futures)
        cluster.start_broker(wait_slots=0)
        results = _wait(futures)
        stats = client.stats
    assert done_at_kill < len(photos), "the batch finished before the broker was killed"
    assert [(r.width, r.height) for r in results] == [_size(d) for d in photos]
    assert stats["completed"] == len(photos) and stats["failed"] == 0
    assert stats["resent"] >= 1


def test_info_works_again_after_asking_while_no_broker_was_there(cluster_factory):
    import asyncio

    import pytest

    from engine import AsyncClient
    from engine.errors import BrokerUnavailable, TaskTimeout

    cluster = cluster_factory(local_workers=0)
    with cluster.client() as client:
        with pytest.raises((TaskTimeout, BrokerUnavailable)):  # the second when the caller wakes late
            client.info(timeout_s=0.5)  # nobody there yet
        cluster.start_broker(wait_slots=0)
        assert client.info(timeout_s=10)["queue_depth"] == 0

    async def main():
        async with AsyncClient(cluster.front, heartbeat_interval_s=0.5) as client:
            cluster.broker.kill()
            with pytest.raises(TaskTimeout):
                await client.info(timeout_s=0.5)
            cluster.start_broker(wait_slots=0)
            return await client.info(timeout_s=10)

    assert asyncio.run(main())["queue_depth"] == 0


def test_with_nothing_listening_on_loopback_info_and_tasks_fail_early_saying_so(jpegs):
    """Issue 25: a refused connection on loopback means no broker: INFO and tasks answer
    BrokerUnavailable (core.REFUSED_INFO_S, REFUSED_TASK_S) long before their own timeouts."""
    import asyncio

    import pytest
    from cluster_helpers import free_port

    from engine import AsyncClient, Client
    from engine.errors import BrokerUnavailable

    address = f"tcp://127.0.0.1:{free_port()}"  # bound and closed: nothing listens
    why = re.escape(f"no broker listens on {address} (connection refused)")
    with Client(address, timeout_s=60) as client:
        started_s = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=why):
            client.info(timeout_s=10)
        assert time.monotonic() - started_s < 5, "INFO waited as if for its 10 s timeout"
        started_s = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=why):
            client.process(jpegs["coins.jpg"], "grayscale")
        assert time.monotonic() - started_s < 30, "the task waited as if for its 60 s timeout"
        assert client.stats["failed"] == 1

    async def main() -> float:
        async with AsyncClient(address, timeout_s=60) as client:
            started_s = time.monotonic()
            with pytest.raises(BrokerUnavailable, match=why):
                await client.info(timeout_s=10)
            return time.monotonic() - started_s

    assert asyncio.run(main()) < 5, "the asyncio client's INFO waited as if for its 10 s timeout"


def test_a_client_started_before_its_broker_gets_its_tasks_done(cluster_factory, jpegs):
    """The early answer is for whoever asks while nothing listens; the connection is retried all
    the while, so a window of tasks sent before the broker starts is done once it does."""
    import pytest

    from engine.errors import BrokerUnavailable

    cluster = cluster_factory(local_workers=1)
    photos = list(jpegs.values())[:8]
    with cluster.client() as client:
        futures = [client.submit(d, "grayscale") for d in photos]
        with pytest.raises(BrokerUnavailable, match="no broker listens"):
            client.info(timeout_s=10)  # nothing listens yet: said within a second ...
        assert not any(f.done() for f in futures)  # ... while the tasks wait on
        cluster.start_broker()
        results = _wait(futures)
        assert client.info(timeout_s=10)["completed"] == len(photos)
        stats = client.stats
    assert [(r.width, r.height) for r in results] == [_size(d) for d in photos]
    assert stats["completed"] == len(photos) and stats["failed"] == 0
