"""Measuring: a windowed driver, latency percentiles, and CPU use of process trees.

Every peer is driven the same way: at most ``window`` tasks in flight, new ones
submitted until the time budget is spent, then the rest drained. Latency is from the
moment a task is submitted to the moment its result is back in the client.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

SAMPLE_INTERVAL_S = 0.25
QUANTILES = tuple(range(0, 101, 5))  # stored per result, for the latency distribution chart
TASK_TIMEOUT_S = 120.0  # a task not done by then counts as a hang, and the run stops


@dataclass
class Run:
    """What one measured run produced (one client's view)."""

    latencies_s: list[float] = field(default_factory=list)
    pipeline_ms: list[float] = field(default_factory=list)  # the worker's own time per task
    started: float = 0.0
    finished: float = 0.0
    errors: list[str] = field(default_factory=list)
    out_bytes: int = 0
    cache_hits: int = 0  # answers a result cache gave instead of a worker (should stay 0)

    @property
    def wall_s(self) -> float:
        return max(self.finished - self.started, 1e-9)

    def record(self, latency_s: float, outcome: Any) -> None:
        """One finished task: ``outcome`` is (out_bytes, meta) or the exception it raised."""
        if isinstance(outcome, BaseException):
            self.errors.append(f"{type(outcome).__name__}: {outcome}"[:300])
            return
        out, meta = (outcome.data, outcome.meta) if hasattr(outcome, "meta") else outcome  # engine Result
        self.latencies_s.append(latency_s)
        self.out_bytes += len(out)
        if isinstance(meta, dict) and meta.get("cache") == "hit":
            self.cache_hits += 1
        if isinstance(meta, dict) and "pipeline_ms" in meta:
            self.pipeline_ms.append(float(meta["pipeline_ms"]))

    def as_dict(self) -> dict:
        return {"latencies_s": self.latencies_s, "pipeline_ms": self.pipeline_ms, "started": self.started,
                "finished": self.finished, "errors": self.errors, "out_bytes": self.out_bytes,
                "cache_hits": self.cache_hits}

    def merge(self, other: Run) -> Run:
        return Run(self.latencies_s + other.latencies_s, self.pipeline_ms + other.pipeline_ms,
                   min(self.started or other.started, other.started or self.started),
                   max(self.finished, other.finished), self.errors + other.errors, self.out_bytes + other.out_bytes,
                   self.cache_hits + other.cache_hits)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(latencies_s: list[float]) -> dict:
    ms = [x * 1000 for x in latencies_s]
    return {"p50": round(percentile(ms, 50), 3), "p95": round(percentile(ms, 95), 3),
            "p99": round(percentile(ms, 99), 3), "mean": round(sum(ms) / len(ms), 3) if ms else 0.0,
            "max": round(max(ms), 3) if ms else 0.0,
            "quantiles": [round(percentile(ms, q), 3) for q in QUANTILES] if ms else []}


def drive(submit: Callable[[int], Any], wait_some: Callable[[list], list], *, window: int, duration_s: float,
          min_tasks: int = 1) -> Run:
    """Keep ``window`` tasks in flight for ``duration_s`` (and at least ``min_tasks``), then drain.

    ``submit(i)`` starts task i and returns its handle (a future, an ObjectRef, an
    AsyncResult); ``wait_some(handles)`` blocks until at least one is done and returns
    ``[(handle, (out_bytes, meta) or the exception)]`` for those done. A task is done
    for the clock when ``wait_some`` returns it: the same rule for every peer.
    """
    run = Run()
    inflight: dict[int, tuple[Any, float]] = {}
    run.started = time.perf_counter()
    deadline = run.started + duration_s
    i = 0
    while True:
        while len(inflight) < window and (time.perf_counter() < deadline or i < min_tasks):
            handle = submit(i)
            inflight[id(handle)] = (handle, time.perf_counter())
            i += 1
        if not inflight:
            break
        done = wait_some([h for h, _ in inflight.values()])
        now = time.perf_counter()
        for handle, outcome in done:
            _, t0 = inflight.pop(id(handle))
            run.record(now - t0, outcome)
        run.finished = now
    return run


def wait_futures(handles: list, timeout_s: float = TASK_TIMEOUT_S) -> list:
    """``wait_some`` for concurrent.futures.Future handles."""
    done, _ = futures.wait(handles, timeout=timeout_s, return_when=futures.FIRST_COMPLETED)
    if not done:
        raise TimeoutError(f"no task finished in {timeout_s:.0f} s")
    out = []
    for fut in done:
        exc = fut.exception()
        out.append((fut, exc if exc is not None else fut.result()))
    return out


def pick(images: tuple[bytes, ...], i: int) -> bytes:
    return images[i % len(images)]


class CpuSampler:
    """CPU seconds used by each role's processes (and all their descendants) over a window.

    ``roles`` is called at every sample and returns {role: [root pids]}, so processes
    that start during the run (pool children, Ray workers) are counted from when they
    are first seen. Processes that end between samples lose their last fraction.
    """

    def __init__(self, roles: Callable[[], dict[str, Iterable[int]]], *, exclude_children_of_self: bool = True):
        import psutil  # the test/bench extra installs it

        self._psutil = psutil
        self._roles = roles
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._t0 = self._t1 = 0.0
        self._exclude = exclude_children_of_self

    def _tree(self, pid: int, role: str) -> list:
        try:
            proc = self._psutil.Process(pid)
            if role == "client" and self._exclude and pid == self._psutil.Process().pid:
                return [proc]  # the harness itself: its peers' children belong to other roles
            return [proc, *proc.children(recursive=True)]
        except self._psutil.Error:
            return []

    def sample(self) -> None:
        try:
            roles = self._roles()
        except Exception:  # a peer being torn down; the next sample will do
            return
        seen: set[int] = set()
        for role, pids in roles.items():
            for root in pids:
                for proc in self._tree(root, role):
                    if proc.pid in seen:
                        continue
                    seen.add(proc.pid)
                    try:
                        t = proc.cpu_times()
                    except self._psutil.Error:
                        continue
                    used = t.user + t.system
                    self._first.setdefault((role, proc.pid), used)
                    self._last[(role, proc.pid)] = used

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def __enter__(self) -> CpuSampler:
        self.sample()
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self._t1 = time.perf_counter()

    def cpu_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (role, pid), last in self._last.items():
            out[role] = out.get(role, 0.0) + last - self._first[(role, pid)]
        return out

    def cores(self) -> dict[str, float]:
        """Average cores busy per role (CPU seconds / wall seconds)."""
        wall = max(self._t1 - self._t0, 1e-9)
        return {role: round(sec / wall, 3) for role, sec in self.cpu_seconds().items()}
