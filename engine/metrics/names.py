"""Every metric the engine exports: names, types, help, label sets, buckets. One home.

Conventions of the Prometheus ecosystem: an ``engine_`` prefix and the role
(``engine_broker_``, ``engine_worker_``), base units in the name (``_seconds``,
``_bytes``, ``_ratio``), ``_total`` on counters, durations as histograms in seconds.
Label values come from fixed sets (error codes from ``engine.errors``, refusal
reasons, worker outcomes) or are bounded (at most ``MAX_HOSTS`` worker host names);
anything else is counted under ``OTHER``. No task id or client id is ever a label.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import (
    ERRORS_BY_CODE,
    BusyError,
    DeadlineExceeded,
    ProtocolError,
    QuotaError,
    ResultTooLarge,
    TaskCancelled,
    Unauthorized,
    VersionError,
    WorkerCrashed,
)

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

# Image tasks take from about 1 ms (noop, a thumbnail) to a minute (denoise on 4K; the
# worker's default task timeout is 60 s).
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

OTHER = "other"  # the label value for anything outside a fixed set
MAX_HOSTS = 64  # worker host names shown by name; the rest are summed under OTHER
MAX_HOST_CHARS = 64  # a host name as a worker announced it is cut to this
UNKNOWN_HOST = "unknown"

ERROR_CODES = tuple(sorted({*ERRORS_BY_CODE, ProtocolError.code, VersionError.code}))
REFUSAL_REASONS = (BusyError.code, QuotaError.code, Unauthorized.code, ProtocolError.code)
CACHE_RESULTS = ("hit", "miss")
# How a task left a worker host, counted once where it ended (see engine/worker/supervisor.py):
# answered with a result, answered with an error of the task (bad_image, ...), its process
# died, killed for running past --task-timeout-s, past its deadline, cancelled, result over
# the broker's message limit. The order is that of the counters in a pool process's slot.
WORKER_OUTCOMES = ("done", "failed", WorkerCrashed.code, "timed_out", DeadlineExceeded.code, TaskCancelled.code,
                   ResultTooLarge.code)


@dataclass(frozen=True)
class Spec:
    """One metric family as exposed: ``name`` is the sample name (counters end in ``_total``)."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()


# ---- the broker ----------------------------------------------------------------------------
B = "engine_broker_"
RECEIVED = Spec(B + "tasks_received_total", COUNTER, "Tasks received from clients, before admission checks.")
COMPLETED = Spec(B + "tasks_completed_total", COUNTER, "Tasks answered with a result (cache hits included).")
FAILED = Spec(B + "tasks_failed_total", COUNTER, "Admitted tasks answered with an error, by error code.",
              ("code",))
RETRIED = Spec(B + "tasks_retried_total", COUNTER,
               "Tasks sent again after a retryable error on a worker (e.g. worker_crashed).")
REQUEUED = Spec(B + "tasks_requeued_total", COUNTER,
                "Tasks put back in the queue because their worker was lost or let their lease expire.")
CANCELLED = Spec(B + "tasks_cancelled_total", COUNTER, "Tasks cancelled by their client.")
REFUSED = Spec(B + "tasks_refused_total", COUNTER,
               "Tasks refused at admission, by reason (busy, quota, unauthorized, bad_message).", ("reason",))
INPUT_BYTES = Spec(B + "input_bytes_total", COUNTER,
                   "Image bytes received with tasks through the sockets (by shared memory: the segment's name).")
OUTPUT_BYTES = Spec(B + "output_bytes_total", COUNTER,
                    "Result bytes sent to clients through the sockets (by shared memory: the segment's name).")
CACHE_LOOKUPS = Spec(B + "cache_lookups_total", COUNTER, "Result cache lookups, by result (hit, miss).",
                     ("result",))
CACHE_HIT_BYTES = Spec(B + "cache_hit_bytes_total", COUNTER, "Result bytes answered from the cache.")
CACHE_SIZE = Spec(B + "cache_size_bytes", GAUGE, "Bytes held in the result cache.")
CACHE_ENTRIES = Spec(B + "cache_entries", GAUGE, "Results held in the result cache.")
QUEUE_DEPTH = Spec(B + "queue_depth", GAUGE, "Tasks waiting for a free worker slot.")
IN_FLIGHT = Spec(B + "tasks_in_flight", GAUGE, "Tasks handed to workers and not answered yet.")
WORKERS = Spec(B + "workers", GAUGE, "Workers connected to the broker.")
STATE_AGE = Spec(B + "state_age_seconds", GAUGE,
                 "Seconds since the broker's loop last published its state (grows while the loop is stuck).")
QUEUE_WAIT = Spec(B + "queue_wait_seconds", HISTOGRAM, "Seconds a task waited in the queue before a worker took it.")
WORKER_TIME = Spec(B + "task_worker_seconds", HISTOGRAM,
                   "Seconds from handing a task to a worker to its answer.")
DURATION = Spec(B + "task_duration_seconds", HISTOGRAM,
                "Seconds from receiving a task to answering it (end to end at the broker).")
HOST_SLOTS = Spec(B + "worker_slots", GAUGE, "Task slots a worker host offers (processes plus prefetch).", ("host",))
HOST_BUSY = Spec(B + "worker_busy_slots", GAUGE, "Task slots in use on a worker host.", ("host",))
HOST_UTILISATION = Spec(B + "worker_utilisation_ratio", GAUGE, "Busy slots over slots on a worker host (0 to 1).",
                        ("host",))
HOST_HEARTBEAT_AGE = Spec(B + "worker_heartbeat_age_seconds", GAUGE,
                          "Seconds since the broker last heard from a worker host (its oldest worker).", ("host",))
HOST_RESTARTS = Spec(B + "worker_restarts_total", COUNTER,
                     "Times a worker on this host registered again (restarted or reconnected), as the broker saw it.",
                     ("host",))

# ---- a worker host ------------------------------------------------------------------------------
W = "engine_worker_"
W_TASKS = Spec(W + "tasks_total", COUNTER, "Tasks this worker host finished, by outcome.", ("outcome",))
W_TASK_TIME = Spec(W + "task_seconds", HISTOGRAM, "Seconds a pool process spent on a task.")
W_RESTARTS = Spec(W + "process_restarts_total", COUNTER, "Pool processes replaced after they died or were killed.")
W_PROCESSES = Spec(W + "processes", GAUGE, "Pool processes alive.")
W_BUSY = Spec(W + "busy_processes", GAUGE, "Pool processes running a task.")
W_HELD = Spec(W + "held_tasks", GAUGE, "Tasks this worker holds (running and prefetched).")
W_STATE_AGE = Spec(W + "state_age_seconds", GAUGE,
                   "Seconds since the worker's loop last published its state (grows while the loop is stuck).")

# ---- both -----------------------------------------------------------------------------------------
BUILD_INFO = Spec("engine_build_info", GAUGE, "Always 1: the engine version and the role of this process.",
                  ("role", "version"))

BROKER_SPECS = (RECEIVED, COMPLETED, FAILED, RETRIED, REQUEUED, CANCELLED, REFUSED, INPUT_BYTES, OUTPUT_BYTES,
                CACHE_LOOKUPS, CACHE_HIT_BYTES, CACHE_SIZE, CACHE_ENTRIES, QUEUE_DEPTH, IN_FLIGHT, WORKERS, STATE_AGE,
                QUEUE_WAIT, WORKER_TIME, DURATION, HOST_SLOTS, HOST_BUSY, HOST_UTILISATION, HOST_HEARTBEAT_AGE,
                HOST_RESTARTS, BUILD_INFO)
WORKER_SPECS = (W_TASKS, W_TASK_TIME, W_RESTARTS, W_PROCESSES, W_BUSY, W_HELD, W_STATE_AGE, BUILD_INFO)
