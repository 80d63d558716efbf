"""A worker host's metrics: a facade its supervisor loop calls, a collector for scrapes.

    metrics = WorkerMetrics()
    metrics.tasks_ended(outcomes, buckets, seconds)  # what pool processes counted in their slots since the last look
    metrics.task_finished("timed_out", seconds)      # one task the supervisor ended (it killed its process)
    metrics.process_restarted()
    metrics.publish_state(processes=4, busy=3, held=7)

Called by the supervisor's loop thread only (see ``store``). The host is not a label:
Prometheus labels each scraped target with its own ``instance``.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, ProcessCollector

from .. import __version__
from . import names as N
from .store import Histogram, described, family, histogram_family, labelled


class _State(NamedTuple):
    published_s: float
    processes: int
    busy: int
    held: int


class WorkerMetrics:
    def __init__(self, *, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        self._outcomes = labelled(N.WORKER_OUTCOMES)
        self._task_s = Histogram(N.BUCKETS_S)
        self._restarts = 0
        self._state = _State(time.monotonic(), 0, 0, 0)
        self.registry.register(_Collector(self))
        if process:  # the supervisor's own CPU and memory (pool processes are separate processes)
            ProcessCollector(registry=self.registry)

    def task_finished(self, outcome: str, seconds: float | None = None) -> None:
        """A task left this host: ``outcome`` from ``WORKER_OUTCOMES`` (others: "other");
        ``seconds`` its pool process spent on it, when it ran."""
        outcomes = self._outcomes
        if outcome in outcomes:
            outcomes[outcome] += 1
        else:
            outcomes[N.OTHER] += 1
        if seconds is not None:
            self._task_s.observe(seconds)

    def tasks_ended(self, outcomes: Sequence[int], buckets: Sequence[int], seconds: float) -> None:
        """Tasks ended elsewhere and counted there: ``outcomes`` in ``WORKER_OUTCOMES`` order;
        the seconds of those that ran, as counts per bucket of ``BUCKETS_S`` (then +Inf) and their sum."""
        counts = self._outcomes
        for outcome, n in zip(N.WORKER_OUTCOMES, outcomes, strict=True):
            counts[outcome] += n
        self._task_s.add(buckets, seconds)

    def process_restarted(self) -> None:
        self._restarts += 1

    def publish_state(self, processes: int, busy: int, held: int = 0) -> None:
        self._state = _State(time.monotonic(), processes, busy, held)


class _Collector:
    def __init__(self, m: WorkerMetrics) -> None:
        self.m = m

    def describe(self):
        return described(N.WORKER_SPECS)

    def collect(self):
        m, state = self.m, self.m._state
        yield family(N.W_TASKS, by=dict(m._outcomes))
        yield histogram_family(N.W_TASK_TIME, m._task_s)
        yield family(N.W_RESTARTS, m._restarts)
        yield family(N.W_PROCESSES, state.processes)
        yield family(N.W_BUSY, state.busy)
        yield family(N.W_HELD, state.held)
        yield family(N.W_STATE_AGE, max(0.0, time.monotonic() - state.published_s))
        info = family(N.BUILD_INFO, by={})
        info.add_metric(["worker", __version__], 1)
        yield info
