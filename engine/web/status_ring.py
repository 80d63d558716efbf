"""The status page's memory: a bounded ring of one sample per second, and the latencies of
the results this gateway saw (the broker's INFO has counters, not timings).

A sample is what the charts plot: tasks completed and failed per second (deltas of the
broker's ``completed`` and ``failed`` counters between two INFO answers), queue depth and
tasks in flight, and latency percentiles over the last ``LATENCY_WINDOW_S`` of results that
went through this gateway (a client talking to the broker directly is not in them).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

RING_SAMPLES = 600  # one per SAMPLE_INTERVAL_S: ten minutes
LATENCY_WINDOW_S = 10.0  # percentiles over the results of the last ten seconds
MAX_LATENCIES = 10_000  # results remembered for the percentiles, whatever the rate
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Sample:
    at_unix_s: float
    up: bool
    done_per_s: float | None = None
    failed_per_s: float | None = None
    queue_depth: int | None = None
    in_flight: int | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_ms: list[float], p: int) -> float | None:
    """Nearest-rank percentile of an ascending list; None when it is empty."""
    if not sorted_ms:
        return None
    rank = max(1, -(-p * len(sorted_ms) // 100))  # ceil(p * n / 100)
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


class LatencyTap:
    """End-to-end times (submit to result, as the gateway measured them) of recent results."""

    def __init__(self, window_s: float = LATENCY_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: deque[tuple[float, float]] = deque(maxlen=MAX_LATENCIES)  # (monotonic s, ms)

    def record(self, elapsed_ms: float) -> None:
        self._seen.append((time.monotonic(), float(elapsed_ms)))

    def percentiles(self) -> dict[str, float | None]:
        since_s = time.monotonic() - self.window_s
        while self._seen and self._seen[0][0] < since_s:
            self._seen.popleft()
        ms = sorted(v for _t, v in self._seen)
        return {f"p{p}_ms": (round(v, 1) if (v := percentile(ms, p)) is not None else None) for p in PERCENTILES}


class Ring:
    """The last ``RING_SAMPLES`` samples, and the counters the next rates are computed from."""

    def __init__(self, size: int = RING_SAMPLES) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)
        self._last: tuple[float, int, int] | None = None  # (monotonic s, completed, failed)

    def add_info(self, info: dict, latency: dict[str, float | None]) -> Sample:
        """A sample from one INFO answer: rates from the counters' change since the last one."""
        now_s = time.monotonic()
        done, failed = _count(info, "completed", "tasks_done"), _count(info, "failed")
        done_rate = failed_rate = None
        if self._last is not None and now_s > self._last[0]:
            dt_s = now_s - self._last[0]
            if done >= self._last[1] and failed >= self._last[2]:  # a restarted broker resets them
                done_rate = round((done - self._last[1]) / dt_s, 3)
                failed_rate = round((failed - self._last[2]) / dt_s, 3)
        self._last = (now_s, done, failed)
        sample = Sample(at_unix_s=round(time.time(), 3), up=True, done_per_s=done_rate, failed_per_s=failed_rate,
                        queue_depth=_int(info.get("queue_depth")), in_flight=_int(info.get("in_flight")), **latency)
        self.samples.append(sample)
        return sample

    def add_gap(self) -> Sample:
        """The broker did not answer: a hole in every chart, and fresh counters next time."""
        self._last = None
        sample = Sample(at_unix_s=round(time.time(), 3), up=False)
        self.samples.append(sample)
        return sample

    def mean(self, field: str, last_s: float) -> float | None:
        """The mean of ``field`` over the samples of the last ``last_s`` seconds that have it."""
        if not self.samples:
            return None
        since = self.samples[-1].at_unix_s - last_s
        values = [v for s in self.samples if s.at_unix_s >= since and (v := getattr(s, field)) is not None]
        return round(sum(values) / len(values), 3) if values else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(info: dict, *keys: str) -> int:
    for key in keys:
        if (v := _int(info.get(key))) is not None:
            return v
    return 0
