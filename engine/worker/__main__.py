"""python -m engine.worker: serve a broker with a pool of processes."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import metrics
from ..errors import ConfigError
from ..security import ENV_BROKER_KEY, ENV_WORKER_KEY, PeerKeys
from ..settings import flag, positive_int, prog, setup_logging
from . import config as C
from .supervisor import Supervisor


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog("engine.worker"),
        description="Connect to a broker's worker socket and process image tasks in a pool of processes "
                    "(one task per process at a time, OpenCV single-threaded in each). SIGTERM drains: "
                    "tasks in hand finish, then the worker disconnects.",
        epilog="Every flag can also be set by the environment variable named in its help.")
    flag(p, "--connect", env="ENGINE_WORKER_CONNECT", default=C.CONNECT, help="the broker's worker endpoint")
    flag(p, "--processes", env="ENGINE_WORKER_PROCESSES", default=os.cpu_count() or 1, type=positive_int,
         help="pool processes (tasks run at once)")
    flag(p, "--prefetch", env="ENGINE_WORKER_PREFETCH", default=C.PREFETCH, type=int,
         help="tasks kept waiting per process, so a process starts its next task without a round trip "
              "to the broker (0: only as many tasks as processes)")
    flag(p, "--max-credit", env="ENGINE_WORKER_MAX_CREDIT", default=C.MAX_CREDIT, type=int,
         help="most tasks a pool process keeps at hand: it starts at 1 + --prefetch and grows when it finds "
              "itself waiting on a slow link while the broker has work (a round trip's worth of tasks); "
              "set it to 1 + --prefetch to turn that off")
    flag(p, "--learned", env="ENGINE_WORKER_LEARNED", default=True,
         help="load the learned models (face detection, person segmentation) in every pool process. "
              "--no-learned: each process starts faster and uses less memory, and this host does not offer "
              "faces, anonymize and background (the broker sends those tasks to hosts that do). A host whose "
              "processes die loading them turns them off by itself after two such deaths")
    flag(p, "--heartbeat-interval-s", env="ENGINE_HEARTBEAT_INTERVAL_S", default=C.HEARTBEAT_INTERVAL_S,
         type=float, help="seconds between heartbeats; the broker is presumed gone after 3 silent intervals")
    flag(p, "--task-timeout-s", env="ENGINE_TASK_TIMEOUT_S", default=C.TASK_TIMEOUT_S, type=float,
         help="a pool process busy longer than this on one task is killed and replaced; the task is answered "
              "deadline_exceeded and not retried (it would hold another process as long)")
    flag(p, "--drain-timeout-s", env="ENGINE_WORKER_DRAIN_TIMEOUT_S", default=C.DRAIN_TIMEOUT_S, type=float,
         help="on SIGTERM, seconds to finish tasks in hand before disconnecting anyway")
    flag(p, "--max-pixels", env="ENGINE_MAX_PIXELS", default=C.MAX_PIXELS, type=positive_int,
         help="largest image accepted, in pixels (checked from the header, before decoding)")
    flag(p, "--max-input-mb", env="ENGINE_MAX_INPUT_MB", default=C.MAX_INPUT_BYTES // 2**20, type=positive_int,
         help="largest encoded input accepted, in MiB")
    flag(p, "--max-decoded-mb", env="ENGINE_MAX_DECODED_MB", default=C.MAX_DECODED_BYTES // 2**20,
         type=positive_int, help="largest decoded image accepted, in MiB: pixels x channels x bytes per sample "
                                 "(and a progressive JPEG's coefficients), estimated from the header")
    flag(p, "--memory-budget-mb", env="ENGINE_MEMORY_BUDGET_MB", default=C.MAX_MEMORY_BYTES // 2**20,
         type=positive_int,
         help="most memory one task may hold at once in a pool process, in MiB: its input, the decoded image, "
              "and one step's intermediates and output, estimated from the image's shape and the step's "
              "parameters before decoding and before each step; a task over it is refused as image_too_large "
              "naming the step. The default fits a Raspberry Pi 4 (4 GiB, 4 cores): 4 pool processes of "
              "~100 MiB with the models, each holding 512 MiB, leave ~1.4 GiB for the system, the broker and "
              "the page cache; and a 64 MP colour image (192 MB) goes through a step with its output. "
              "Per process: multiply by --processes for the host")
    flag(p, "--key", env=ENV_WORKER_KEY, default="",
         help="CURVE: this worker's secret key file (python -m engine.keys new NAME); the broker must list "
              "its public key under workers/ (empty: plaintext)")
    flag(p, "--broker-key", env=ENV_BROKER_KEY, default="", help="CURVE: the broker's public key file (broker.key)")
    metrics.add_flag(p, example_port=9465)
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        curve = PeerKeys.from_files(args.key, args.broker_key, key_env=ENV_WORKER_KEY)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = C.WorkerConfig(curve=curve, connect=args.connect, processes=args.processes, prefetch=max(0, args.prefetch),
                            max_credit=args.max_credit,
                            heartbeat_interval_s=args.heartbeat_interval_s, task_timeout_s=args.task_timeout_s,
                            drain_timeout_s=args.drain_timeout_s, max_pixels=args.max_pixels,
                            max_input_bytes=args.max_input_mb * 2**20,
                            max_decoded_bytes=args.max_decoded_mb * 2**20,
                            max_memory_bytes=args.memory_budget_mb * 2**20, learned=args.learned)
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
