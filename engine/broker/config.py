"""Broker settings: one dataclass, every default with its unit."""
from __future__ import annotations

import os
from dataclasses import dataclass

# Loopback unless told otherwise (``--public`` binds every interface): an open broker
# serves anyone who can reach the port, so opening it is a decision, not a default.
FRONT = "tcp://127.0.0.1:5555"
BACK = "tcp://127.0.0.1:5556"
PUBLIC_FRONT = "tcp://*:5555"
PUBLIC_BACK = "tcp://*:5556"
COMPAT_PULL = "tcp://127.0.0.1:5558"
COMPAT_PUSH = "tcp://127.0.0.1:5559"
COMPAT_ROUTER = "tcp://127.0.0.1:5560"
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_LIVENESS = 3  # missed intervals before a peer is dead
MAX_QUEUE = 1000  # tasks waiting for a worker; beyond this, clients get "busy"
# Images waiting for a worker, in the broker's memory: beyond these, new tasks get "busy" (one task
# is always let through when nothing of its client waits, so an image of any accepted size can run).
# Sized for a small machine (a Raspberry Pi 4 with 2-4 GB); a big broker may raise them.
MAX_QUEUE_BYTES = 512 * 1024 * 1024
CLIENT_MAX_QUEUE_BYTES = 128 * 1024 * 1024
MAX_RETRIES = 2  # times a task may take a worker down with it (or let its lease expire) before it is failed
MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # ZMQ_MAXMSGSIZE on every broker socket
DRAIN_TIMEOUT_S = 10.0  # on SIGTERM, how long in-flight tasks get to finish
CACHE_BYTES = 256 * 1024 * 1024  # result cache size; 0 turns the cache off
CACHE_MAX_ENTRIES = 100_000  # result cache entries, whatever their size
CLIENT_MAX_IN_FLIGHT = 0  # tasks one client may have at the broker at once (0: no limit)
CLIENT_RATE_PER_S = 0.0  # tasks a second one client may send on average (0: no limit)
CLIENT_BURST = 0  # tasks above the rate one client may send at once (0: one second's worth)
TASK_LEASE_S = 180.0  # a task a worker holds this long without answering is taken back and retried
LEASE_GRACE_S = 10.0  # a task with a deadline: its lease ends this long after the deadline
MAX_LEASE_EXPIRIES = 3  # leases a worker may let expire in a row before it is dropped
# Replies waiting for a client that does not read them (in the broker's memory, per client):
UNREAD_REFUSE_BYTES = 64 * 1024 * 1024  # beyond this, the client's new tasks get "busy"
UNREAD_DROP_BYTES = 256 * 1024 * 1024  # beyond this, its oldest waiting replies are dropped
UNREAD_REFUSE_TASKS = 2_000
UNREAD_DROP_TASKS = 8_000
REPLY_PIPE_MESSAGES = 32  # ZMQ_SNDHWM per peer: what libzmq queues before the broker holds replies itself
WORKER_PIPE_MESSAGES = 10_000  # ZMQ_SNDHWM per worker: tasks (bounded by its slots), cancels, heartbeats
MAX_SLOTS_PER_WORKER = 1024  # a READY cannot claim more
# Registrations (see ``state.Dispatcher.refusal``): one peer must not slow everyone down by registering
# thousands of workers or of distinct declarations. A host is what a worker names in READY (its pool
# processes name their supervisor's), so a lying peer is held by the totals; CURVE admits only
# listed workers (SECURITY.md).
MAX_WORKERS = 4096  # registered workers (pool processes and control connections), all hosts
MAX_WORKERS_PER_HOST = 512  # a 256-core host's pool processes and its supervisor, with room
MAX_SLOTS_PER_HOST = 4096  # slots one host's workers announce together (1 + prefetch + credit each)
MAX_LIVE_DECLARATIONS = 16  # distinct declarations of the operations among connected workers
MAX_CLIENTS = 10_000  # connected clients tracked at once; more are answered "busy"
MAX_IDENTITIES = 10_000  # per-client quota records; the idle ones go first
# libzmq's rule of thumb is one I/O thread per gigabyte a second in or out. The broker's
# payloads are 10 kB to 30 MB; one thread per four cores (at least one, at most four)
# leaves the rest to the broker's Python thread and to workers on the same host.
IO_THREADS_MAX = 4


def default_io_threads(cores: int | None = None) -> int:
    """libzmq I/O threads for a host with ``cores`` CPUs (``os.cpu_count()`` if None)."""
    return max(1, min(IO_THREADS_MAX, (cores or os.cpu_count() or 1) // 4))


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    front: str = FRONT
    back: str = BACK
    io_threads: int = 0  # libzmq I/O threads of the broker's context (0: ``default_io_threads()``)
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    heartbeat_liveness: int = HEARTBEAT_LIVENESS
    max_queue: int = MAX_QUEUE
    max_queue_bytes: int = MAX_QUEUE_BYTES
    max_workers: int = MAX_WORKERS
    max_workers_per_host: int = MAX_WORKERS_PER_HOST
    max_slots_per_host: int = MAX_SLOTS_PER_HOST
    max_declarations: int = MAX_LIVE_DECLARATIONS
    client_max_queue_bytes: int = CLIENT_MAX_QUEUE_BYTES
    max_retries: int = MAX_RETRIES
    max_message_bytes: int = MAX_MESSAGE_BYTES
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    cache_bytes: int = CACHE_BYTES
    cache_max_entries: int = CACHE_MAX_ENTRIES
    compat: bool = False
    compat_pull: str = COMPAT_PULL
    compat_push: str = COMPAT_PUSH
    compat_router: str = COMPAT_ROUTER
    compat_token: str = ""  # when set, every compat JSON request must carry it as "token"
    keys_dir: str = ""  # CURVE on every socket: broker.key_secret, clients/, workers/ (see engine.security)
    secure: bool = False  # refuse to start without keys_dir
    client_max_in_flight: int = CLIENT_MAX_IN_FLIGHT
    client_rate_per_s: float = CLIENT_RATE_PER_S
    client_burst: int = CLIENT_BURST
    task_lease_s: float = TASK_LEASE_S
    max_lease_expiries: int = MAX_LEASE_EXPIRIES
    unread_refuse_bytes: int = UNREAD_REFUSE_BYTES
    unread_drop_bytes: int = UNREAD_DROP_BYTES
    unread_refuse_tasks: int = UNREAD_REFUSE_TASKS
    unread_drop_tasks: int = UNREAD_DROP_TASKS
    max_clients: int = MAX_CLIENTS
    max_identities: int = MAX_IDENTITIES
    hot_path: bool = True  # common tasks forwarded by the hot path (see fastlane); off: all Python
    shared_memory: bool = True  # same-host peers pass images through shared memory (engine.shm); never with CURVE
