"""The broker's task events, counted once: its INFO counters and its Prometheus series read them.

    metrics = BrokerMetrics()                   # its own CollectorRegistry
    server = serve(metrics.registry, "127.0.0.1", 9464)
    metrics.received(); metrics.bytes_in(len(image))
    metrics.completed(queue_wait_s, worker_s, total_s)
    metrics.publish_state(queue_depth, in_flight, workers=[WorkerRow(...), ...])
    info.update(metrics.counts())              # INFO's received, completed, failed, ... from the same numbers

This is the broker's one sink for what happens to tasks (received, completed, failed by
code, refused by reason, cancelled, retried, requeued): the broker calls it and keeps no
count of its own for these, so INFO (``counts``) and ``/metrics`` cannot disagree.
Every method is called by the broker's loop thread only (see ``store``): no locks,
no sockets, no reading of the broker's own dicts. Gauges come from the last
``publish_state`` snapshot, an immutable tuple the HTTP thread reads when Prometheus
scrapes, with the time since it was published added to the heartbeat ages (so a
stuck loop shows as growing ages and ``engine_broker_state_age_seconds``).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client import CollectorRegistry, ProcessCollector

from .. import __version__
from ..errors import BusyError, ProtocolError, QuotaError, TaskCancelled, Unauthorized
from . import names as N
from .store import Histogram, described, family, histogram_family, labelled


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One connected worker, as the broker sees it when it publishes its state."""

    host: str
    slots: int
    busy: int
    heartbeat_age_s: float
    restarts: int = 0  # times a worker of this host registered again


class _State(NamedTuple):
    published_s: float
    queue_depth: int
    in_flight: int
    workers: tuple[WorkerRow, ...]
    cache_bytes: int | None
    cache_entries: int | None


class BrokerMetrics:
    """Counters, histograms and the published state of one broker."""

    def __init__(self, *, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        self._received = self._completed = self._retried = self._requeued = self._reassigned = self._cancelled = 0
        self._worker_bad_messages = 0  # messages from workers dropped as malformed (INFO's bad_messages)
        self._bytes_in = self._bytes_out = self._cache_hit_bytes = 0
        self._failed = labelled(N.ERROR_CODES)
        self._refused = labelled(N.REFUSAL_REASONS)
        self._cache = labelled(N.CACHE_RESULTS, other=False)
        self._queue_wait = Histogram(N.BUCKETS_S)
        self._worker = Histogram(N.BUCKETS_S)
        self._total = Histogram(N.BUCKETS_S)
        self._state = _State(time.monotonic(), 0, 0, (), None, None)
        self.registry.register(_Collector(self))
        if process:  # process_cpu_seconds_total, process_resident_memory_bytes, ... of this process
            ProcessCollector(registry=self.registry)

    # ---- the hot path: one call per event, each well under a few µs -------------------------
    def received(self, n: int = 1) -> None:
        self._received += n

    def completed(self, queue_wait_s: float | None, worker_s: float | None, total_s: float) -> None:
        """A task answered with a result; a cache hit passes None for the two it skipped."""
        self._completed += 1
        self.timed(queue_wait_s, worker_s, total_s)

    def answered(self, n: int) -> None:
        """Tasks the hot path answered with a result (their times come one by one to ``timed``)."""
        self._completed += n

    def timed(self, queue_wait_s: float | None, worker_s: float | None, total_s: float) -> None:
        """The times of one completed task (counted by ``completed`` or ``answered``)."""
        if queue_wait_s is not None:
            self._queue_wait.observe(queue_wait_s)
        if worker_s is not None:
            self._worker.observe(worker_s)
        self._total.observe(total_s)

    def failed(self, code: str) -> None:
        """An admitted task answered with an error; ``code`` is its wire code (others: "other")."""
        failed = self._failed
        if code in failed:
            failed[code] += 1
        else:
            failed[N.OTHER] += 1

    def retried(self) -> None:
        self._retried += 1

    def requeued(self, n: int = 1, *, blamed: bool = True) -> None:
        """Tasks put back in the queue (their worker lost, or its lease expired); ``blamed``: the
        task may have caused it and an attempt is counted (INFO ``requeued``), else INFO ``reassigned``."""
        if blamed:
            self._requeued += n
        else:
            self._reassigned += n

    def worker_bad_message(self) -> None:
        """A malformed message from a worker, dropped (no task refused: INFO ``bad_messages`` only)."""
        self._worker_bad_messages += 1

    def cancelled(self) -> None:
        self._cancelled += 1

    def refused(self, reason: str) -> None:
        """A task refused at admission: ``BusyError.code``, ``QuotaError.code``, ``Unauthorized.code``
        or ``ProtocolError.code`` (anything else counts as "other")."""
        refused = self._refused
        if reason in refused:
            refused[reason] += 1
        else:
            refused[N.OTHER] += 1

    def bytes_in(self, n: int) -> None:
        self._bytes_in += n

    def bytes_out(self, n: int) -> None:
        self._bytes_out += n

    def cache(self, hit: bool, nbytes: int = 0) -> None:
        """A result cache lookup; ``nbytes``: the size of the result a hit answered with."""
        if hit:
            self._cache["hit"] += 1
            self._cache_hit_bytes += nbytes
        else:
            self._cache["miss"] += 1

    # ---- INFO ----------------------------------------------------------------------------------
    def counts(self) -> dict:
        """INFO's task counters, from the numbers the series are made of: ``failed`` is the sum of
        ``engine_broker_tasks_failed_total``, ``busy``/``quota``/``unauthorized`` its refusals by
        reason, ``requeued`` + ``reassigned`` the retried and requeued series together."""
        refused = self._refused
        return {"received": self._received, "completed": self._completed, "failed": sum(self._failed.values()),
                TaskCancelled.code: self._cancelled, BusyError.code: refused[BusyError.code],
                QuotaError.code: refused[QuotaError.code], Unauthorized.code: refused[Unauthorized.code],
                "bad_messages": refused[ProtocolError.code] + self._worker_bad_messages,
                "requeued": self._retried + self._requeued, "reassigned": self._reassigned,
                "failed_by_code": {code: n for code, n in self._failed.items() if n},
                "refused_by_reason": {reason: n for reason, n in refused.items() if n}}

    # ---- once per heartbeat -----------------------------------------------------------------
    def publish_state(self, queue_depth: int, in_flight: int, workers: Iterable[WorkerRow] = (), *,
                      cache_bytes: int | None = None, cache_entries: int | None = None) -> None:
        """Replace the snapshot the gauges are read from (one assignment: the HTTP thread sees
        the old snapshot or the new one, never half of each)."""
        self._state = _State(time.monotonic(), queue_depth, in_flight, tuple(workers), cache_bytes, cache_entries)


def fold_hosts(rows: Iterable[WorkerRow], max_hosts: int = N.MAX_HOSTS) -> dict[str, list]:
    """Per host label: [slots, busy, oldest heartbeat age, restarts], summed over the workers of
    a host; beyond ``max_hosts`` names (in name order) the rest are summed under "other"."""
    per_host: dict[str, list] = {}
    for row in rows:
        host = (row.host or N.UNKNOWN_HOST)[: N.MAX_HOST_CHARS]
        acc = per_host.get(host)
        if acc is None:
            per_host[host] = [row.slots, row.busy, row.heartbeat_age_s, row.restarts]
        else:
            acc[0] += row.slots
            acc[1] += row.busy
            acc[2] = max(acc[2], row.heartbeat_age_s)
            acc[3] += row.restarts
    if len(per_host) <= max_hosts:
        return per_host
    names = sorted(per_host)
    kept = {host: per_host[host] for host in names[:max_hosts]}
    other = kept.pop(N.OTHER, [0, 0, 0.0, 0])  # a real host named "other" is summed with them
    for host in names[max_hosts:]:
        acc = per_host[host]
        other = [other[0] + acc[0], other[1] + acc[1], max(other[2], acc[2]), other[3] + acc[3]]
    kept[N.OTHER] = other
    return kept


class _Collector:
    """Read at scrape time, on the HTTP thread, from numbers and the immutable snapshot."""

    def __init__(self, m: BrokerMetrics) -> None:
        self.m = m

    def describe(self):
        return described(N.BROKER_SPECS)

    def collect(self):
        m, state = self.m, self.m._state
        yield family(N.RECEIVED, m._received)
        yield family(N.COMPLETED, m._completed)
        yield family(N.FAILED, by=dict(m._failed))
        yield family(N.RETRIED, m._retried)
        yield family(N.REQUEUED, m._requeued + m._reassigned)
        yield family(N.CANCELLED, m._cancelled)
        yield family(N.REFUSED, by=dict(m._refused))
        yield family(N.INPUT_BYTES, m._bytes_in)
        yield family(N.OUTPUT_BYTES, m._bytes_out)
        yield family(N.CACHE_LOOKUPS, by=dict(m._cache))
        yield family(N.CACHE_HIT_BYTES, m._cache_hit_bytes)
        if state.cache_bytes is not None:
            yield family(N.CACHE_SIZE, state.cache_bytes)
        if state.cache_entries is not None:
            yield family(N.CACHE_ENTRIES, state.cache_entries)
        yield histogram_family(N.QUEUE_WAIT, m._queue_wait)
        yield histogram_family(N.WORKER_TIME, m._worker)
        yield histogram_family(N.DURATION, m._total)
        age_s = max(0.0, time.monotonic() - state.published_s)
        yield family(N.QUEUE_DEPTH, state.queue_depth)
        yield family(N.IN_FLIGHT, state.in_flight)
        yield family(N.WORKERS, len(state.workers))
        yield family(N.STATE_AGE, age_s)
        hosts = fold_hosts(state.workers)
        yield family(N.HOST_SLOTS, by={h: v[0] for h, v in hosts.items()})
        yield family(N.HOST_BUSY, by={h: v[1] for h, v in hosts.items()})
        yield family(N.HOST_UTILISATION, by={h: (v[1] / v[0] if v[0] else 0.0) for h, v in hosts.items()})
        yield family(N.HOST_HEARTBEAT_AGE, by={h: v[2] + age_s for h, v in hosts.items()})
        yield family(N.HOST_RESTARTS, by={h: v[3] for h, v in hosts.items()})
        info = family(N.BUILD_INFO, by={})
        info.add_metric(["broker", __version__], 1)
        yield info
