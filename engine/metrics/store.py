"""Counters and histograms kept as plain numbers by one thread, exposed by another.

prometheus-client's own ``Counter`` and ``Histogram`` take a lock on every update
(about 0.7 and 1.5 µs here); the broker updates several per task on its one thread.
Here an update is an integer addition (about 0.1 µs) done only by the owning thread
(the broker's or the worker's loop), and the HTTP thread reads the numbers when
Prometheus scrapes: under the GIL it sees each number either before or after an
update, never torn. The families below are prometheus-client's, so the text format
is the library's own.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .names import COUNTER, HISTOGRAM, OTHER, Spec


class Histogram:
    """Observations in fixed buckets (``le`` bounds in seconds), single writer."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # v <= bound falls in that bound's bucket
        self.sum += value

    def add(self, counts: Sequence[int], total: float) -> None:
        """Observations counted elsewhere in the same buckets: counts per bucket (+Inf last), their sum."""
        mine = self.counts
        for i, n in enumerate(counts):
            mine[i] += n
        self.sum += total

    def snapshot(self) -> tuple[list[int], float]:
        return list(self.counts), self.sum  # list() copies in one step under the GIL


def labelled(values: Iterable[str], *, other: bool = True) -> dict[str, int]:
    """Counts for a fixed set of label values (plus OTHER), all exposed from the start at 0,
    so that ``rate()`` sees the first increase."""
    counts = dict.fromkeys(values, 0)
    if other:
        counts.setdefault(OTHER, 0)
    return counts


def _name(spec: Spec) -> str:
    return spec.name[: -len("_total")] if spec.kind == COUNTER and spec.name.endswith("_total") else spec.name


def family(spec: Spec, value: float | None = None, *, by: Mapping[str, float] | None = None):
    """A counter or gauge family: one unlabelled ``value``, or one sample per label value in ``by``."""
    cls = CounterMetricFamily if spec.kind == COUNTER else GaugeMetricFamily
    if by is None:
        return cls(_name(spec), spec.help, value=value)
    fam = cls(_name(spec), spec.help, labels=spec.labels)
    for label, v in by.items():
        fam.add_metric([label], v)
    return fam


def histogram_family(spec: Spec, hist: Histogram):
    counts, total = hist.snapshot()
    buckets, running = [], 0
    for bound, count in zip((*hist.bounds, float("inf")), counts):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return HistogramMetricFamily(spec.name, spec.help, buckets=buckets, sum_value=total)


def described(specs: Iterable[Spec]) -> list:
    """Empty families, for the registry's check that no two collectors export one name."""
    out: list[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily] = []
    for spec in specs:
        if spec.kind == HISTOGRAM:
            out.append(HistogramMetricFamily(spec.name, spec.help, labels=spec.labels or None))
        else:
            cls = CounterMetricFamily if spec.kind == COUNTER else GaugeMetricFamily
            out.append(cls(_name(spec), spec.help, labels=spec.labels or None))
    return out


