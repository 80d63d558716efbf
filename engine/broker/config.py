"""Broker settings: one dataclass, every default with its unit."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .. import protocol as P
from ..security import ENV_KEYS_DIR
from ..settings import fixed, setting

# Loopback unless told otherwise (``--public`` binds every interface): an open broker
# serves anyone who can reach the port, so opening it is a decision, not a default.
FRONT = "tcp://127.0.0.1:5555"
BACK = "tcp://127.0.0.1:5556"
PUBLIC_FRONT = "tcp://*:5555"
PUBLIC_BACK = "tcp://*:5556"
COMPAT_PULL = "tcp://127.0.0.1:5558"
COMPAT_PUSH = "tcp://127.0.0.1:5559"
COMPAT_ROUTER = "tcp://127.0.0.1:5560"
# Heartbeats: the defaults live with the wire format; the broker announces its own to every peer.
HEARTBEAT_INTERVAL_S = P.HEARTBEAT_INTERVAL_S
HEARTBEAT_LIVENESS = P.HEARTBEAT_LIVENESS  # missed intervals before a peer is dead
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
DRAIN_BATCH = 512  # messages read from one socket before looking at the others (the hot path's too)
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
MIB = 2**20


def default_io_threads(cores: int | None = None) -> int:
    """libzmq I/O threads for a host with ``cores`` CPUs (``os.cpu_count()`` if None)."""
    return max(1, min(IO_THREADS_MAX, (cores or os.cpu_count() or 1) // 4))


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    """Every field a flag of ``python -m engine.broker`` sets is declared with it (``setting``);
    the others say why none does (``fixed``)."""

    front: str = setting(
        FRONT, env="ENGINE_BROKER_FRONT", flag_default="",
        help=f"endpoint clients connect to (empty: {FRONT}, or {PUBLIC_FRONT} with --public)")
    back: str = setting(
        BACK, env="ENGINE_BROKER_BACK", flag_default="",
        help=f"endpoint workers connect to (empty: {BACK}, or {PUBLIC_BACK} with --public)")
    # libzmq I/O threads of the broker's context (0: ``default_io_threads()``)
    io_threads: int = setting(
        0, env="ENGINE_IO_THREADS",
        help="libzmq I/O threads moving the bytes (about one per GB/s of images in and out; 0: one per "
             f"4 cores, at least 1, at most {IO_THREADS_MAX}: {default_io_threads()} on this host)")
    heartbeat_interval_s: float = setting(
        HEARTBEAT_INTERVAL_S, env="ENGINE_HEARTBEAT_INTERVAL_S",
        help="seconds between heartbeats; a peer silent for 3 intervals is dead. Announced in every "
             "heartbeat: workers, clients and the web gateway follow it")
    heartbeat_liveness: int = fixed(HEARTBEAT_LIVENESS, why="the heartbeat contract: announced to the peers, "
                                                            "which follow it")
    max_queue: int = setting(
        MAX_QUEUE, env="ENGINE_MAX_QUEUE",
        help="tasks that may wait for a free worker; when full, clients get a 'busy' error")
    max_queue_bytes: int = setting(
        MAX_QUEUE_BYTES, flag="--max-queue-mb", scale=MIB, env="ENGINE_MAX_QUEUE_MB",
        help="MiB of images that may wait for a free worker, all clients together; beyond this new tasks "
             "get 'busy' (the broker's memory with no worker connected stays within about this much)")
    max_workers: int = setting(
        MAX_WORKERS, env="ENGINE_MAX_WORKERS",
        help="workers registered at once, all hosts (each pool process counts one, its supervisor one); "
             "a READY beyond this is refused and logged")
    max_workers_per_host: int = setting(
        MAX_WORKERS_PER_HOST, env="ENGINE_MAX_WORKERS_PER_HOST",
        help="workers registered at once from one host (the host a worker names)")
    max_slots_per_host: int = setting(
        MAX_SLOTS_PER_HOST, env="ENGINE_MAX_SLOTS_PER_HOST",
        help="task slots one host's workers may announce together; slots claimed beyond it are ignored")
    max_declarations: int = setting(
        MAX_LIVE_DECLARATIONS, env="ENGINE_MAX_DECLARATIONS",
        help="distinct declarations of the operations among connected workers (engine versions in a rolling "
             "upgrade); a worker declaring one more is refused. Each costs every new pipeline one more check")
    client_max_queue_bytes: int = setting(
        CLIENT_MAX_QUEUE_BYTES, flag="--client-max-queue-mb", scale=MIB, env="ENGINE_CLIENT_MAX_QUEUE_MB",
        help="MiB of one client's images that may wait for a free worker; beyond this its new tasks "
             "get 'busy' (a client with nothing waiting may always queue one image)")
    max_retries: int = setting(
        MAX_RETRIES, env="ENGINE_MAX_RETRIES",
        help="times a task may crash or lose its worker before it is failed to the client")
    max_message_bytes: int = setting(
        MAX_MESSAGE_BYTES, flag="--max-message-mb", scale=MIB, env="ENGINE_MAX_MESSAGE_MB",
        help="largest message frame accepted, in MiB; a peer that sends more is disconnected")
    drain_timeout_s: float = setting(
        DRAIN_TIMEOUT_S, env="ENGINE_DRAIN_TIMEOUT_S",
        help="on SIGTERM, seconds to wait for tasks in flight before exiting (none once no worker is connected)")
    cache_bytes: int = setting(
        CACHE_BYTES, flag="--cache-mb", scale=MIB, env="ENGINE_CACHE_MB",
        help="result cache size in MiB: a repeated image and pipeline is answered without a worker "
             "(0 turns the cache off; a client can also send options={'cache': False})")
    cache_max_entries: int = fixed(CACHE_MAX_ENTRIES, why="bounds the cache's index where results are tiny; "
                                                          "--cache-mb is the setting")
    compat: bool = setting(
        False, env="ENGINE_COMPAT", help="also serve the older JSON/base64 format on the three compat sockets below")
    compat_pull: str = setting(
        COMPAT_PULL, env="ENGINE_COMPAT_PULL", help="compat: PULL socket where JSON clients PUSH requests")
    compat_push: str = setting(
        COMPAT_PUSH, env="ENGINE_COMPAT_PUSH",
        help="compat: PUSH socket JSON clients PULL results from (one client only: PUSH cannot address)")
    compat_router: str = setting(
        COMPAT_ROUTER, env="ENGINE_COMPAT_ROUTER",
        help="compat: ROUTER socket where a REQ or DEALER client gets its own JSON replies (recommended)")
    compat_token: str = setting(  # when set, every compat JSON request must carry it as "token"
        "", env="ENGINE_COMPAT_TOKEN",
        help="compat: every JSON request must carry this shared secret as \"token\" (empty: none needed)")
    keys_dir: str = setting(  # CURVE on every socket: broker.key_secret, clients/, workers/ (see engine.security)
        "", env=ENV_KEYS_DIR,
        help="CURVE on every socket: folder with broker.key_secret and the allow-lists clients/ and workers/ "
             "(python -m engine.keys init; empty: plaintext, anyone who can connect is served)")
    secure: bool = setting(
        False, env="ENGINE_SECURE", help="refuse to start without --keys-dir (so a typo never starts an open broker)")
    client_max_in_flight: int = setting(
        CLIENT_MAX_IN_FLIGHT, env="ENGINE_CLIENT_MAX_IN_FLIGHT",
        help="tasks one client may have at the broker at once; more get a 'quota' error (0: no limit)")
    client_rate_per_s: float = setting(
        CLIENT_RATE_PER_S, flag="--client-rate", env="ENGINE_CLIENT_RATE",
        help="tasks a second one client may send on average; more get a 'quota' error (0: no limit)")
    client_burst: int = setting(
        CLIENT_BURST, env="ENGINE_CLIENT_BURST",
        help="tasks above --client-rate one client may send at once (0: one second's worth)")
    task_lease_s: float = setting(
        TASK_LEASE_S, env="ENGINE_TASK_LEASE_S",
        help=f"a task its worker has not answered after this long (or its deadline + {LEASE_GRACE_S:g} s) is "
             f"taken back and retried elsewhere; a worker that lets {MAX_LEASE_EXPIRIES} leases expire in a row "
             "is dropped")
    max_lease_expiries: int = fixed(MAX_LEASE_EXPIRIES, why="named in --task-lease-s's help; a tuning of the "
                                                            "lease, not of a deployment")
    unread_refuse_bytes: int = setting(
        UNREAD_REFUSE_BYTES, flag="--client-unread-mb", scale=MIB, env="ENGINE_CLIENT_UNREAD_MB",
        help="results waiting in the broker for a client that does not read them: beyond this many MiB "
             "its new tasks get 'busy'; beyond 4 times this its oldest waiting results are dropped")
    unread_drop_bytes: int = fixed(UNREAD_DROP_BYTES, why="4 times --client-unread-mb (the command line sets it)")
    unread_refuse_tasks: int = fixed(UNREAD_REFUSE_TASKS, why="the count behind --client-unread-mb, for tiny "
                                                              "results")
    unread_drop_tasks: int = fixed(UNREAD_DROP_TASKS, why="4 times unread_refuse_tasks")
    max_clients: int = setting(
        MAX_CLIENTS, env="ENGINE_MAX_CLIENTS",
        help="connected clients tracked at once; a new client beyond this gets 'busy'")
    max_identities: int = fixed(MAX_IDENTITIES, why="quota records, bounded like --max-clients; the idle go first")
    hot_path: bool = setting(  # common tasks forwarded by the hot path (see fastlane); off: all Python
        True, env="ENGINE_HOT_PATH",
        help="forward tasks of the common shape in the hot path (compiled when built; "
             "ENGINE_NO_EXTENSIONS=1 runs its pure-Python twin); off: every message through the "
             "Python path. It is off by itself with CURVE or client quotas")
    shared_memory: bool = setting(  # same-host peers pass images through shared memory (engine.shm); never with CURVE
        True, flag="--shm", env="ENGINE_SHM",
        help="clients and pool processes on this host that prove it (they read a key only this user "
             "can) pass images through shared memory (/dev/shm, mode 0600) and send only their names; "
             "never offered with CURVE or to another host. ENGINE_NO_SHM=1 turns it off in any process")
