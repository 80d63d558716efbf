"""The status page's memory: a bounded ring of one sample per second, and the latencies of
the results this gateway saw (the broker's INFO has counters, not timings).

A sample is what the charts plot: tasks completed and failed per second (deltas of the
broker's ``completed`` and ``failed`` counters between two INFO answers), queue depth and
tasks in flight, and latency percentiles over the last ``LATENCY_WINDOW_S`` of results that
went through this gateway (a client talking to the broker directly is not in them). When the
sampler starts, the ring is seeded from the broker's own history (``seed``): the minutes before
anyone looked are charted too (without latencies, which only this gateway measures).
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

    def seed(self, history: object) -> int:
        """Samples from the broker's own history (INFO's ``history``: rows of ``age_s``, counters and
        queue), for the time this ring has none of: a batch run before anyone looked is charted.
        Returns how many were added; the next ``add_info`` computes its rates from the newest row."""
        if not isinstance(history, dict) or not isinstance(history.get("columns"), list):
            return 0
        columns = {name: i for i, name in enumerate(history["columns"]) if isinstance(name, str)}
        if not {"age_s", "completed", "failed"} <= columns.keys() or not isinstance(history.get("rows"), list):
            return 0
        now_unix_s, now_s = time.time(), time.monotonic()
        since_unix_s = self.samples[-1].at_unix_s if self.samples else float("-inf")
        added, last = 0, None
        for row in history["rows"]:
            if not isinstance(row, list) or len(row) < len(columns):
                continue
            age_s, done, failed = row[columns["age_s"]], _int(row[columns["completed"]]), _int(row[columns["failed"]])
            if not isinstance(age_s, (int, float)) or age_s < 0 or done is None or failed is None:
                continue
            at_unix_s = now_unix_s - age_s
            rates: dict[str, float | None] = {"done_per_s": None, "failed_per_s": None}
            if last is not None and age_s < last[0] and done >= last[1] and failed >= last[2]:
                dt_s = last[0] - age_s
                rates = {"done_per_s": round((done - last[1]) / dt_s, 3),
                         "failed_per_s": round((failed - last[2]) / dt_s, 3)}
            last = (age_s, done, failed)
            if at_unix_s <= since_unix_s:
                continue
            self.samples.append(Sample(at_unix_s=round(at_unix_s, 3), up=True, **rates,
                                       queue_depth=_int(_at(row, columns.get("queue_depth"))),
                                       in_flight=_int(_at(row, columns.get("in_flight")))))
            added += 1
        if last is not None:
            self._last = (now_s - last[0], last[1], last[2])
        return added

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


def _at(row: list, index: int | None) -> object:
    return row[index] if index is not None and index < len(row) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(info: dict, *keys: str) -> int:
    for key in keys:
        if (v := _int(info.get(key))) is not None:
            return v
    return 0
