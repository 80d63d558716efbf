"""python -m engine.worker: serve a broker with a pool of processes."""
from __future__ import annotations

import argparse
import signal
import sys

from .. import metrics
from ..errors import ConfigError
from ..security import ENV_BROKER_KEY, ENV_WORKER_KEY, PeerKeys
from ..settings import add_flags, flag, from_args, prog, setup_logging
from . import config as C
from .supervisor import Supervisor


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog("engine.worker"),
        description="Connect to a broker's worker socket and process image tasks in a pool of processes "
                    "(one task per process at a time, OpenCV single-threaded in each). SIGTERM drains: "
                    "tasks in hand finish, then the worker disconnects.",
        epilog="Every flag can also be set by the environment variable named in its help.")
    add_flags(p, C.WorkerConfig)
    flag(p, "--key", env=ENV_WORKER_KEY, default="",
         help="CURVE: this worker's secret key file (python -m engine.keys new NAME); the broker must list "
              "its public key under workers/ (empty: plaintext)")
    flag(p, "--broker-key", env=ENV_BROKER_KEY, default="", help="CURVE: the broker's public key file (broker.key)")
    metrics.add_flag(p, example_port=metrics.WORKER_PORT)
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    return p.parse_args(argv)


def worker_config(args: argparse.Namespace) -> C.WorkerConfig:
    """The worker's settings from its parsed flags (each field's flag is declared on the field);
    ConfigError if a key file named is unusable."""
    curve = PeerKeys.from_files(args.key, args.broker_key, key_env=ENV_WORKER_KEY)
    return from_args(C.WorkerConfig, args, curve=curve, prefetch=max(0, args.prefetch))


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = worker_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(config)
    try:
        server = metrics.start(supervisor.metrics.registry, args.metrics_listen)
    except (OSError, ConfigError) as exc:
        print(f"error: metrics endpoint: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stop())
    try:
        supervisor.run()
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
