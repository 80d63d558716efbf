"""The Celery app the benchmark's Celery worker runs (``celery -A bench.peers.celery_app``).

Configured as Celery's documentation advises for many short tasks with binary data:
msgpack (JSON cannot carry bytes), the default prefetch multiplier of 4, fair scheduling
and no gossip, mingle or heartbeat chatter (flags on the worker command line).
The Redis URL comes from BENCH_REDIS_URL: the harness starts its own redis-server.
"""
from __future__ import annotations

import os

from celery import Celery

TASK_NAME = "bench.run"
RESULT_EXPIRES_S = 600


def make_app(url: str) -> Celery:
    app = Celery("bench", broker=url, backend=url)
    app.conf.update(task_serializer="msgpack", result_serializer="msgpack", accept_content=["msgpack"],
                    worker_prefetch_multiplier=4, result_expires=RESULT_EXPIRES_S,
                    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    return app


app = make_app(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.task(name=TASK_NAME)
def run_pipeline(data: bytes, pipeline: str):
    from engine.ops import run

    return run(data, pipeline)
