"""Prometheus metrics for the broker and for each worker host (prometheus-client).

    from engine.metrics import BrokerMetrics, WorkerRow, serve
    metrics = BrokerMetrics()                  # a private CollectorRegistry, no global state
    server = serve(metrics.registry)           # http://127.0.0.1:<port>/metrics, daemon thread

``names`` lists every metric (name, type, help, labels, buckets); ``broker`` and
``worker`` are the facades the two loops call; ``store`` keeps the numbers (one
writer thread, read at scrape time); ``http`` serves them and adds the
``--metrics-listen`` flag. ``python -m engine.metrics`` prints a sample of the output
and the cost of each call. docs/operations-guide.md says what to watch.
"""
from .broker import BrokerMetrics, WorkerRow
from .http import BROKER_PORT, ENV_METRICS_LISTEN, WORKER_PORT, MetricsServer, add_flag, parse_listen, serve, start
from .worker import WorkerMetrics

__all__ = [
           "BROKER_PORT",
           "ENV_METRICS_LISTEN",
           "WORKER_PORT",
           "BrokerMetrics",
           "MetricsServer",
           "WorkerMetrics",
           "WorkerRow",
           "add_flag",
           "parse_listen",
           "serve",
           "start",
]
