"""python -m engine.broker: run a broker (and, with --local-workers, its own workers)."""
from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile

from .. import fdlimit, metrics
from ..errors import ConfigError
from ..security import CLIENTS, ENV_BROKER_KEY, ENV_CLIENT_KEY, ENV_WORKER_KEY, WORKERS, CurveServer
from ..settings import add_flags, flag, from_args, prog, setup_logging
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
    flag(p, "--public", env="ENGINE_PUBLIC", default=False,
         help="listen on every network interface instead of loopback only; without --keys-dir anyone who "
              "can reach the ports may send tasks or pose as a worker (see SECURITY.md)")
    flag(p, "--local-workers", env="ENGINE_LOCAL_WORKERS", default=0, type=int,
         help="start a local worker with this many processes beside the broker (0: none)")
    flag(p, "--web", env="ENGINE_WEB", default="",
         help="also start the web gateway listening on this HOST:PORT, e.g. 127.0.0.1:8080 (empty: no web)")
    add_flags(p, C.BrokerConfig)
    metrics.add_flag(p, example_port=metrics.BROKER_PORT)
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    return p.parse_args(argv)


def broker_config(args: argparse.Namespace) -> C.BrokerConfig:
    """The broker's settings from its parsed flags (each field's flag is declared on the field)."""
    return from_args(C.BrokerConfig, args, front=args.front or (C.PUBLIC_FRONT if args.public else C.FRONT),
                     back=args.back or (C.PUBLIC_BACK if args.public else C.BACK),
                     io_threads=max(0, args.io_threads), unread_drop_bytes=4 * args.client_unread_mb * 2**20)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    config = broker_config(args)
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
    companion_keys, envs = _companion_keys(broker.curve) if broker.curve and (args.local_workers > 0 or args.web) \
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


def _companion_keys(curve: CurveServer) -> tuple[str, dict[str, dict[str, str | None]]]:
    """With CURVE, local workers and the web gateway get fresh keys, allowed in memory only,
    each through the environment of its own process only (in a private folder removed at exit):
    the workers a worker key, the web gateway a client key, neither the other's."""
    folder = tempfile.mkdtemp(prefix="engine-companion-keys-")  # mode 0700
    envs: dict[str, dict[str, str | None]] = {}
    for role, name, env in ((WORKERS, "local-workers", ENV_WORKER_KEY), (CLIENTS, "local-web", ENV_CLIENT_KEY)):
        secret_file, broker_file = curve.grant_companion(role, name, folder)
        envs[role] = {env: str(secret_file), ENV_BROKER_KEY: str(broker_file)}
    envs[CLIENTS][ENV_WORKER_KEY] = None  # the web gateway is a client: no worker key, even one set outside
    envs[WORKERS][ENV_CLIENT_KEY] = None
    return folder, envs


if __name__ == "__main__":
    raise SystemExit(main())
