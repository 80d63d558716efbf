"""Chaos: kill and stop workers at random while a batch runs, then count every task.

    python tools/chaos.py --local                                  # its own broker and 3 workers
    python tools/chaos.py --connect tcp://HOST:5555 --yes          # your deployment: the workers
                                                                   # it finds on THIS host

Actions, one every --interval-s (randomised): SIGKILL one pool process, SIGKILL a whole
worker (supervisor and pool), or SIGSTOP a worker for --stop-s and SIGCONT it. At least one
worker is never touched. With --local, a worker killed outright is started again.

The tally: submitted, completed, duplicates suppressed (second answers the client
dropped), failed with an error (by code), lost (no answer at all: must be 0). The exit
status is 1 if anything was lost or answered with another task's output.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine import Client
from engine.errors import BrokerUnavailable, TaskError, TaskTimeout

HEARTBEAT_S = 0.5  # --local: fast failure detection


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="start a broker and --workers workers of its own")
    where.add_argument("--connect", help="your broker's client endpoint, e.g. tcp://HOST:5555")
    p.add_argument("--yes", action="store_true", help="with --connect: really kill the workers found on this host")
    p.add_argument("--match", default="", help="with --connect: only workers whose command line contains this")
    p.add_argument("--workers", type=int, default=3, help="--local: workers, one process each (default: 3)")
    p.add_argument("--tasks", type=int, default=300, help="tasks in the batch (default: 300)")
    p.add_argument("--pipeline", help="pipeline (default: --local 'sleep:ms=150|grayscale', else 'blur:sigma=3')")
    p.add_argument("--image", type=Path, help="input image (default: a generated 640x480 JPEG)")
    p.add_argument("--interval-s", type=float, default=1.0, help="mean seconds between actions (default: 1)")
    p.add_argument("--stop-s", type=float, default=3.0, help="seconds a stopped worker stays stopped (default: 3)")
    p.add_argument("--timeout-s", type=float, default=300.0, help="per task, and for the whole batch (default: 300)")
    p.add_argument("--heartbeat-interval-s", type=float, default=2.0,
                   help="with --connect: your broker's heartbeat interval (default: 2)")
    p.add_argument("--seed", type=int, help="random seed, to replay a run")
    return p.parse_args(argv)


class LocalCluster:
    def __init__(self, workers: int) -> None:
        ports = [_free_port() for _ in range(2)]
        self.front, self.back = (f"tcp://127.0.0.1:{p}" for p in ports)
        self.broker = self._start("engine.broker", "--front", self.front, "--back", self.back,
                                  "--local-workers", "0", "--cache-mb", "0")
        self.workers = [self.start_worker() for _ in range(workers)]

    def _start(self, module: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", module, *args, "--heartbeat-interval-s", str(HEARTBEAT_S),
                                 "--log-level", "warning"], stderr=subprocess.DEVNULL)

    def start_worker(self) -> subprocess.Popen:
        return self._start("engine.worker", "--connect", self.back, "--processes", "1", "--test-ops")  # sleep

    def close(self) -> None:
        for proc in [*self.workers, self.broker]:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                if proc.poll() is None:
                    proc.send_signal(sig)
        for proc in [*self.workers, self.broker]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_workers(match: str) -> list[psutil.Process]:
    """Worker supervisors on this host, by command line."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "engine.worker" in line and "engine.broker" not in line and match in line and proc.pid != os.getpid():
            found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def pool_of(worker: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in worker.children() if "spawn_main" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def chaos_step(rng: random.Random, workers: list[psutil.Process], stopped: dict, args, log: Counter) -> list:
    """One random action on one worker other than the first (never touched); returns those killed."""
    now_s = time.monotonic()
    for worker, (family, until_s) in list(stopped.items()):
        if now_s >= until_s:
            signal_all(family, signal.SIGCONT)
            del stopped[worker]
    victims = [w for w in workers[1:] if w.is_running() and w not in stopped]
    if not victims:
        return []
    worker = rng.choice(victims)
    action = rng.choice(["kill_pool_process", "kill_worker", "stop_worker"])
    pool = pool_of(worker)
    if action == "kill_pool_process" and pool:
        signal_all([rng.choice(pool)], signal.SIGKILL)
    elif action == "stop_worker":
        stopped[worker] = ([worker, *pool], now_s + args.stop_s)
        signal_all([worker, *pool], signal.SIGSTOP)
    else:
        action = "kill_worker"
        signal_all([worker, *pool], signal.SIGKILL)
        log[action] += 1
        return [worker]
    log[action] += 1
    return []


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.connect and not args.yes:
        print("chaos.py kills and stops real worker processes on this host; add --yes to do so", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    local = LocalCluster(args.workers) if args.local else None
    address = local.front if local else args.connect
    heartbeat_s = HEARTBEAT_S if local else args.heartbeat_interval_s
    pipeline = args.pipeline or ("sleep:ms=150|grayscale" if local else "blur:sigma=3")
    image = args.image.read_bytes() if args.image else cv2.imencode(
        ".jpg", np.random.default_rng(7).integers(0, 255, (480, 640, 3), np.uint8))[1].tobytes()
    actions: Counter = Counter()
    stopped: dict = {}
    try:
        # validate=False: with --local the pipeline may use test-only operations only workers offer
        with Client(address, timeout_s=args.timeout_s, heartbeat_interval_s=heartbeat_s, validate=False) as client:
            deadline_s = time.monotonic() + 60
            while not client.info(timeout_s=30)["workers"] and time.monotonic() < deadline_s:
                time.sleep(0.2)
            workers = [psutil.Process(w.pid) for w in local.workers] if local else find_workers(args.match)
            if len(workers) < 2:
                print(f"found {len(workers)} worker(s) on this host: chaos needs 2 (one is never touched)",
                      file=sys.stderr)
                return 2
            started_s = time.monotonic()
            futures = [client.submit(image, pipeline) for _ in range(args.tasks)]
            while not all(f.done() for f in futures) and time.monotonic() - started_s < args.timeout_s:
                time.sleep(rng.expovariate(1 / args.interval_s))
                for dead in chaos_step(rng, workers, stopped, args, actions):
                    if local:  # keep the capacity: a fresh worker replaces the one killed
                        fresh = local.start_worker()
                        local.workers.append(fresh)
                        workers[workers.index(dead)] = psutil.Process(fresh.pid)
            for family, _ in stopped.values():
                signal_all(family, signal.SIGCONT)
            cf.wait(futures, timeout=max(1.0, args.timeout_s - (time.monotonic() - started_s)))
            elapsed_s = time.monotonic() - started_s
            stats = client.stats
    finally:
        for family, _ in stopped.values():
            signal_all(family, signal.SIGCONT)
        if local:
            local.close()
    completed, failed, lost = 0, Counter(), 0
    for future in futures:
        exc = future.exception(0) if future.done() else TaskTimeout("not done")
        if exc is None:
            completed += 1
        elif isinstance(exc, (TaskTimeout, BrokerUnavailable)):
            lost += 1
        else:
            failed[exc.code if isinstance(exc, TaskError) else type(exc).__name__] += 1
    print(f"chaos actions: {dict(actions)} over {elapsed_s:.1f} s")
    print(f"submitted:             {len(futures)}")
    print(f"completed:             {completed}")
    print(f"duplicates suppressed: {stats['duplicates']}")
    print(f"failed with an error:  {sum(failed.values())} {dict(failed) if failed else ''}")
    print(f"lost:                  {lost}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
