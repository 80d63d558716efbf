"""python -m engine.broker: run a broker (and, with --local-workers, its own workers)."""
from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile

from .. import fdlimit, metrics
from ..errors import ConfigError
from ..security import CLIENTS, ENV_BROKER_KEY, ENV_CLIENT_KEY, ENV_KEYS_DIR, ENV_WORKER_KEY, WORKERS
from ..settings import flag, prog, setup_logging
from . import config as C
from .core import Broker
from .local import connect_endpoint, local_workers, web_gateway

log = logging.getLogger("engine.broker")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog("engine.broker"),
        description="Route image tasks from clients to workers over ZeroMQ. Clients connect a DEALER to "
                    "--front, workers to --back; each task goes to the least recently used worker with a "
                    "free slot. With --local-workers N this one command is a complete system.",
        epilog="Every flag can also be set by the environment variable named in its help.")
    flag(p, "--front", env="ENGINE_BROKER_FRONT", default="",
         help=f"endpoint clients connect to (empty: {C.FRONT}, or {C.PUBLIC_FRONT} with --public)")
    flag(p, "--back", env="ENGINE_BROKER_BACK", default="",
         help=f"endpoint workers connect to (empty: {C.BACK}, or {C.PUBLIC_BACK} with --public)")
    flag(p, "--public", env="ENGINE_PUBLIC", default=False,
         help="listen on every network interface instead of loopback only; without --keys-dir anyone who "
              "can reach the ports may send tasks or pose as a worker (see SECURITY.md)")
    flag(p, "--local-workers", env="ENGINE_LOCAL_WORKERS", default=0, type=int,
         help="start a local worker with this many processes beside the broker (0: none)")
    flag(p, "--web", env="ENGINE_WEB", default="",
         help="also start the web gateway listening on this HOST:PORT, e.g. 127.0.0.1:8080 (empty: no web)")
    flag(p, "--max-queue", env="ENGINE_MAX_QUEUE", default=C.MAX_QUEUE, type=int,
         help="tasks that may wait for a free worker; when full, clients get a 'busy' error")
    flag(p, "--max-queue-mb", env="ENGINE_MAX_QUEUE_MB", default=C.MAX_QUEUE_BYTES // 2**20, type=int,
         help="MiB of images that may wait for a free worker, all clients together; beyond this new tasks "
              "get 'busy' (the broker's memory with no worker connected stays within about this much)")
    flag(p, "--client-max-queue-mb", env="ENGINE_CLIENT_MAX_QUEUE_MB", default=C.CLIENT_MAX_QUEUE_BYTES // 2**20,
         type=int, help="MiB of one client's images that may wait for a free worker; beyond this its new tasks "
                        "get 'busy' (a client with nothing waiting may always queue one image)")
    flag(p, "--max-workers", env="ENGINE_MAX_WORKERS", default=C.MAX_WORKERS, type=int,
         help="workers registered at once, all hosts (each pool process counts one, its supervisor one); "
              "a READY beyond this is refused and logged")
    flag(p, "--max-workers-per-host", env="ENGINE_MAX_WORKERS_PER_HOST", default=C.MAX_WORKERS_PER_HOST, type=int,
         help="workers registered at once from one host (the host a worker names)")
    flag(p, "--max-slots-per-host", env="ENGINE_MAX_SLOTS_PER_HOST", default=C.MAX_SLOTS_PER_HOST, type=int,
         help="task slots one host's workers may announce together; slots claimed beyond it are ignored")
    flag(p, "--max-declarations", env="ENGINE_MAX_DECLARATIONS", default=C.MAX_LIVE_DECLARATIONS, type=int,
         help="distinct declarations of the operations among connected workers (engine versions in a rolling "
              "upgrade); a worker declaring one more is refused. Each costs every new pipeline one more check")
    flag(p, "--max-retries", env="ENGINE_MAX_RETRIES", default=C.MAX_RETRIES, type=int,
         help="times a task may crash or lose its worker before it is failed to the client")
    flag(p, "--heartbeat-interval-s", env="ENGINE_HEARTBEAT_INTERVAL_S", default=C.HEARTBEAT_INTERVAL_S,
         type=float, help="seconds between heartbeats; a peer silent for 3 intervals is dead")
    flag(p, "--max-message-mb", env="ENGINE_MAX_MESSAGE_MB", default=C.MAX_MESSAGE_BYTES // 2**20, type=int,
         help="largest message frame accepted, in MiB; a peer that sends more is disconnected")
    flag(p, "--drain-timeout-s", env="ENGINE_DRAIN_TIMEOUT_S", default=C.DRAIN_TIMEOUT_S, type=float,
         help="on SIGTERM, seconds to wait for tasks in flight before exiting")
    flag(p, "--cache-mb", env="ENGINE_CACHE_MB", default=C.CACHE_BYTES // 2**20, type=int,
         help="result cache size in MiB: a repeated image and pipeline is answered without a worker "
              "(0 turns the cache off; a client can also send options={'cache': False})")
    flag(p, "--compat", env="ENGINE_COMPAT", default=False,
         help="also serve the older JSON/base64 format on the three compat sockets below")
    flag(p, "--compat-pull", env="ENGINE_COMPAT_PULL", default=C.COMPAT_PULL,
         help="compat: PULL socket where JSON clients PUSH requests")
    flag(p, "--compat-push", env="ENGINE_COMPAT_PUSH", default=C.COMPAT_PUSH,
         help="compat: PUSH socket JSON clients PULL results from (one client only: PUSH cannot address)")
    flag(p, "--compat-router", env="ENGINE_COMPAT_ROUTER", default=C.COMPAT_ROUTER,
         help="compat: ROUTER socket where a REQ or DEALER client gets its own JSON replies (recommended)")
    flag(p, "--compat-token", env="ENGINE_COMPAT_TOKEN", default="",
         help="compat: every JSON request must carry this shared secret as \"token\" (empty: none needed)")
    flag(p, "--keys-dir", env=ENV_KEYS_DIR, default="",
         help="CURVE on every socket: folder with broker.key_secret and the allow-lists clients/ and workers/ "
              "(python -m engine.keys init; empty: plaintext, anyone who can connect is served)")
    flag(p, "--secure", env="ENGINE_SECURE", default=False,
         help="refuse to start without --keys-dir (so a typo never starts an open broker)")
    flag(p, "--client-max-in-flight", env="ENGINE_CLIENT_MAX_IN_FLIGHT", default=C.CLIENT_MAX_IN_FLIGHT, type=int,
         help="tasks one client may have at the broker at once; more get a 'quota' error (0: no limit)")
    flag(p, "--client-rate", env="ENGINE_CLIENT_RATE", default=C.CLIENT_RATE_PER_S, type=float,
         help="tasks a second one client may send on average; more get a 'quota' error (0: no limit)")
    flag(p, "--client-burst", env="ENGINE_CLIENT_BURST", default=C.CLIENT_BURST, type=int,
         help="tasks above --client-rate one client may send at once (0: one second's worth)")
    flag(p, "--task-lease-s", env="ENGINE_TASK_LEASE_S", default=C.TASK_LEASE_S, type=float,
         help="a task its worker has not answered after this long (or its deadline + "
              f"{C.LEASE_GRACE_S:g} s) is taken back and retried elsewhere; a worker that lets "
              f"{C.MAX_LEASE_EXPIRIES} leases expire in a row is dropped")
    flag(p, "--client-unread-mb", env="ENGINE_CLIENT_UNREAD_MB", default=C.UNREAD_REFUSE_BYTES // 2**20, type=int,
         help="results waiting in the broker for a client that does not read them: beyond this many MiB "
              "its new tasks get 'busy'; beyond 4 times this its oldest waiting results are dropped")
    flag(p, "--max-clients", env="ENGINE_MAX_CLIENTS", default=C.MAX_CLIENTS, type=int,
         help="connected clients tracked at once; a new client beyond this gets 'busy'")
    flag(p, "--io-threads", env="ENGINE_IO_THREADS", default=0, type=int,
         help="libzmq I/O threads moving the bytes (about one per GB/s of images in and out; 0: one per "
              f"4 cores, at least 1, at most {C.IO_THREADS_MAX}: {C.default_io_threads()} on this host)")
    flag(p, "--hot-path", env="ENGINE_HOT_PATH", default=True,
         help="forward tasks of the common shape in the hot path (compiled when built; "
              "ENGINE_NO_EXTENSIONS=1 runs its pure-Python twin); off: every message through the "
              "Python path. It is off by itself with CURVE or client quotas")
    flag(p, "--shm", env="ENGINE_SHM", default=True,
         help="clients and pool processes on this host that prove it (they read a key only this user "
              "can) pass images through shared memory (/dev/shm, mode 0600) and send only their names; "
              "never offered with CURVE or to another host. ENGINE_NO_SHM=1 turns it off in any process")
    metrics.add_flag(p, example_port=9464)
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    front = args.front or (C.PUBLIC_FRONT if args.public else C.FRONT)
    back = args.back or (C.PUBLIC_BACK if args.public else C.BACK)
    config = C.BrokerConfig(
        front=front, back=back, heartbeat_interval_s=args.heartbeat_interval_s,
        max_queue=args.max_queue, max_queue_bytes=args.max_queue_mb * 2**20,
        client_max_queue_bytes=args.client_max_queue_mb * 2**20, max_workers=args.max_workers,
        max_workers_per_host=args.max_workers_per_host, max_slots_per_host=args.max_slots_per_host,
        max_declarations=args.max_declarations, max_retries=args.max_retries,
        max_message_bytes=args.max_message_mb * 2**20, drain_timeout_s=args.drain_timeout_s,
        cache_bytes=args.cache_mb * 2**20,
        compat=args.compat, compat_pull=args.compat_pull, compat_push=args.compat_push,
        compat_router=args.compat_router, compat_token=args.compat_token, keys_dir=args.keys_dir,
        secure=args.secure, client_max_in_flight=args.client_max_in_flight, client_rate_per_s=args.client_rate,
        client_burst=args.client_burst, task_lease_s=args.task_lease_s,
        unread_refuse_bytes=args.client_unread_mb * 2**20, unread_drop_bytes=4 * args.client_unread_mb * 2**20,
        max_clients=args.max_clients, io_threads=max(0, args.io_threads),
        hot_path=args.hot_path, shared_memory=args.shm)
    limits = fdlimit.raise_soft_limit()
    if limits is not None:
        log.info("file descriptors: up to %d open (one per connection; hard limit %s)", limits[0],
                 "unlimited" if limits[1] < 0 else limits[1])
    try:
        broker = Broker(config)
    except (OSError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    try:
        metrics_server = metrics.start(broker.metrics.registry, args.metrics_listen)
    except (OSError, ConfigError) as exc:
        log.error("metrics endpoint: %s", exc)
        broker.close()
        return 2
    if metrics_server is not None:
        log.info("Prometheus metrics on %s", metrics_server.url)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: broker.stop())
    _warn_if_open(broker)
    front = connect_endpoint(broker.endpoints["front"])
    companion_keys, envs = _companion_keys(broker) if broker.curve and (args.local_workers > 0 or args.web) \
        else (None, {WORKERS: {}, CLIENTS: {}})
    for env in envs.values():  # the broker's metrics port is its own: companions must not try to bind it
        env[metrics.ENV_METRICS_LISTEN] = None
    companions = []
    if args.local_workers > 0:
        companions.append(local_workers(connect_endpoint(broker.endpoints["back"]), args.local_workers,
                                        args.heartbeat_interval_s, env=envs[WORKERS]))
    if args.web:
        companions.append(web_gateway(args.web, front, args.heartbeat_interval_s, env=envs[CLIENTS]))
    for companion in companions:
        companion.start()
    log.info("ready: send images to %s (python -m engine.client --help)%s", front,
             f"; web pages on http://{args.web}" if args.web else "")
    try:
        broker.run()
    finally:
        for companion in reversed(companions):  # the web gateway first, workers (draining) last
            companion.stop()
        broker.close()
        if metrics_server is not None:
            metrics_server.close()
        if companion_keys:
            shutil.rmtree(companion_keys, ignore_errors=True)
    return 0


def _warn_if_open(broker: Broker) -> None:
    for name, endpoint in broker.endpoints.items():
        host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if broker.curve is None and not (host.startswith("127.") or host in ("::1", "localhost")):
            log.warning("the %s socket listens on %s without CURVE: anyone who can reach it may %s. "
                        "Use --keys-dir (python -m engine.keys init), or keep it on loopback", name, endpoint,
                        "send tasks and read their results" if name == "front" else "pose as a worker")


def _companion_keys(broker: Broker) -> tuple[str, dict[str, dict[str, str | None]]]:
    """With CURVE, local workers and the web gateway get fresh keys, allowed in memory only,
    each through the environment of its own process only (in a private folder removed at exit):
    the workers a worker key, the web gateway a client key, neither the other's."""
    folder = tempfile.mkdtemp(prefix="engine-companion-keys-")  # mode 0700
    envs: dict[str, dict[str, str | None]] = {}
    for role, name, env in ((WORKERS, "local-workers", ENV_WORKER_KEY), (CLIENTS, "local-web", ENV_CLIENT_KEY)):
        secret_file, broker_file = broker.curve.grant_companion(role, name, folder)
        envs[role] = {env: str(secret_file), ENV_BROKER_KEY: str(broker_file)}
    envs[CLIENTS][ENV_WORKER_KEY] = None  # the web gateway is a client: no worker key, even one set outside
    envs[WORKERS][ENV_CLIENT_KEY] = None
    return folder, envs


if __name__ == "__main__":
    raise SystemExit(main())
