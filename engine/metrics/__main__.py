"""python -m engine.metrics: a sample of the metrics output, and what each call costs."""
from __future__ import annotations

import argparse
import timeit

from prometheus_client import generate_latest

from ..errors import BusyError, ImageError
from ..settings import prog
from .broker import BrokerMetrics, WorkerRow
from .worker import WorkerMetrics


def sample() -> str:
    """Both registries after a few made-up events (no process metrics: they vary by machine)."""
    broker, worker = BrokerMetrics(process=False), WorkerMetrics(process=False)
    for i in range(20):
        broker.received()
        broker.bytes_in(250_000)
        broker.cache(False)
        broker.completed(0.002 * i, 0.030 + 0.01 * i, 0.035 + 0.012 * i)
        broker.bytes_out(40_000)
        worker.task_finished("done", 0.028 + 0.01 * i)
    broker.failed(ImageError.code)
    broker.refused(BusyError.code)
    broker.publish_state(3, 4, [WorkerRow("edge-1", 4, 3, 0.4), WorkerRow("edge-2", 4, 1, 1.2, restarts=1)],
                         cache_bytes=800_000, cache_entries=20)
    worker.publish_state(processes=2, busy=1, held=3)
    return generate_latest(broker.registry).decode() + "\n" + generate_latest(worker.registry).decode()


def costs(number: int = 200_000) -> dict[str, float]:
    """Microseconds per call of the hot-path methods (best of 5 runs of ``number`` calls)."""
    broker, worker = BrokerMetrics(process=False), WorkerMetrics(process=False)
    calls = {
        "BrokerMetrics.received()": broker.received,
        "BrokerMetrics.bytes_in(n)": lambda: broker.bytes_in(250_000),
        "BrokerMetrics.completed(q, w, t)": lambda: broker.completed(0.002, 0.031, 0.034),
        "BrokerMetrics.failed(code)": lambda: broker.failed(ImageError.code),
        "BrokerMetrics.refused(reason)": lambda: broker.refused(BusyError.code),
        "BrokerMetrics.cache(hit, n)": lambda: broker.cache(True, 40_000),
        "WorkerMetrics.task_finished(o, s)": lambda: worker.task_finished("done", 0.031),
        "(an empty lambda, for scale)": lambda: None,
    }
    return {name: min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6 for name, fn in calls.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=prog("engine.metrics"),
                                description="Print a sample of the broker's and a worker's /metrics output "
                                            "(--sample), or time the calls the broker and worker loops make "
                                            "per task (--cost). The names are listed in engine/metrics/names.py.")
    p.add_argument("--sample", action="store_true", help="print the text format after a few made-up tasks")
    p.add_argument("--cost", action="store_true", help="print microseconds per call (timeit, best of 5)")
    args = p.parse_args(argv)
    if not (args.sample or args.cost):
        p.print_help()
        return 2
    if args.sample:
        print(sample(), end="")
    if args.cost:
        for name, us in costs().items():
            print(f"{us:8.3f} µs  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
