"""Shared by the fault-injection tests: test-only operations, tiny images, a task tally.

Each test counts every task it submits: completed (with the right output), failed (by
error code), lost (no answer at all) and the duplicates the client suppressed.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
import psutil

from engine.errors import TaskError

SLOW = "sleep:ms=300|grayscale"  # slow enough to be caught mid-task, small enough for 2 cores
WAIT_S = 120.0  # every wait here is bounded; the per-test timeout (180 s) is the last resort
TEST_OPS = "--test-ops"  # the worker flag that offers the test-only operations (sleep, crash, hang)


def start(cluster_factory, workers: tuple[int, ...] = (2,), *worker_flags: str, extra: list[str] | None = None):
    """A broker with no local workers, plus one worker (with test ops) per entry of ``workers``."""
    cluster = cluster_factory(local_workers=0, extra=extra)
    cluster.start_broker(wait_slots=0)
    for processes in workers:
        cluster.add_worker(processes, TEST_OPS, *worker_flags)
    flags = list(worker_flags)
    per_process = 1 + (int(flags[flags.index("--prefetch") + 1]) if "--prefetch" in flags else 1)
    cluster.wait_ready(per_process * sum(workers))  # every pool process registered (each on its own)
    return cluster


def add_worker(cluster, processes: int = 1, *flags: str):
    """One more worker, with the test-only operations."""
    return cluster.add_worker(processes, TEST_OPS, *flags)


def tiny_jpeg(width: int, height: int = 16) -> bytes:
    rng = np.random.default_rng(width * 1000 + height)
    return cv2.imencode(".jpg", rng.integers(0, 255, (height, width, 3), np.uint8))[1].tobytes()


@dataclass
class Batch:
    """Tasks whose outputs can be told apart: task n has an input (and output) 16+n pixels wide."""

    futures: list = field(default_factory=list)
    widths: list = field(default_factory=list)

    @classmethod
    def submit(cls, client, n: int, pipeline: str | list = SLOW, **kwargs) -> Batch:
        batch = cls()
        for i in range(n):
            batch.widths.append(16 + i)
            batch.futures.append(client.submit(tiny_jpeg(16 + i), pipeline, **kwargs))
        return batch

    def done(self) -> int:
        return sum(f.done() for f in self.futures)

    def wait_done(self, count: int, timeout_s: float = WAIT_S) -> None:
        wait_until(lambda: self.done() >= count, timeout_s, f"{count} task(s) done")


@dataclass
class Tally:
    submitted: int
    completed: int
    failed: Counter
    lost: int
    wrong: int  # completed with another task's output
    duplicates: int

    def assert_exactly_once(self, n: int) -> None:
        """All ``n`` tasks completed, each with its own output; none failed or lost."""
        assert (self.submitted, self.completed, self.lost, self.wrong, sum(self.failed.values())) == \
            (n, n, 0, 0, 0), self

    def line(self, name: str) -> str:
        failed = sum(self.failed.values())
        return (f"FIGURES {name}: submitted={self.submitted} completed={self.completed} failed={failed} "
                f"{dict(self.failed)} lost={self.lost} wrong={self.wrong} duplicates_suppressed={self.duplicates}")


def tally(client, batch: Batch, name: str, timeout_s: float = WAIT_S) -> Tally:
    """Wait for every task (bounded), count the outcomes and print them as FIGURES."""
    cf.wait(batch.futures, timeout=timeout_s)
    completed = wrong = lost = 0
    failed: Counter = Counter()
    for future, width in zip(batch.futures, batch.widths):
        if not future.done():
            lost += 1
        elif future.cancelled():
            failed["cancelled_locally"] += 1
        elif future.exception() is not None:
            exc = future.exception()
            failed[exc.code if isinstance(exc, TaskError) else type(exc).__name__] += 1
        else:
            completed += 1
            wrong += future.result().width != width
    result = Tally(len(batch.futures), completed, failed, lost, wrong, client.stats["duplicates"])
    print(result.line(name))
    return result


def wait_until(predicate, timeout_s: float = WAIT_S, what: str = "condition", poll_s: float = 0.05):
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def pool_pids(worker_pid: int) -> list[int]:
    """The pool processes of a worker supervisor (not multiprocessing's resource tracker)."""
    try:
        children = psutil.Process(worker_pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(child.cmdline()):
                out.append(child.pid)
    return sorted(out)


def worker_pid_of(result) -> int:
    return int(result.worker.rsplit(":", 1)[1])


def broker_idle(asker, timeout_s: float = 30.0) -> dict:
    """Wait until the broker holds no task at all (nothing queued, nothing in flight);
    ``asker`` is a Cluster or a Client (anything with ``info()``)."""
    def idle():
        info = asker.info()
        return info if info["queue_depth"] == 0 and info["in_flight"] == 0 else None

    return wait_until(idle, timeout_s, "the broker to hold no task")
