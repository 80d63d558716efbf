"""Soak: push many small tasks through a cluster and sample broker and worker memory.

    python tools/soak.py --tasks 100000                 # starts its own broker + local workers
    python tools/soak.py --connect tcp://127.0.0.1:5555 # an existing broker; RSS of the engine
                                                        # processes found on this host

Prints one line per sample (tasks done, rate, RSS of the broker and of the workers: each
supervisor plus its pool processes) and a summary with the first, middle and last samples.
Not part of the test suite: it runs for minutes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine import Client


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connect", help="broker front endpoint; without it a local cluster is started")
    p.add_argument("--tasks", type=int, default=100_000, help="tasks to push (default: 100000)")
    p.add_argument("--pipeline", default="grayscale", help="pipeline for every task (default: grayscale)")
    p.add_argument("--size", type=int, default=16, help="side of the square test JPEG, in pixels (default: 16)")
    p.add_argument("--window", type=int, default=256, help="tasks in flight at once (default: 256)")
    p.add_argument("--processes", type=int, default=2, help="local cluster: worker processes (default: 2)")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples (default: 5)")
    return p.parse_args(argv)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_processes(broker_pid: int | None) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(broker, worker supervisors) on this host: the local broker's family, or found by command line."""
    if broker_pid is not None:
        broker = psutil.Process(broker_pid)
        return [broker], [c for c in broker.children() if "engine.worker" in " ".join(c.cmdline())]
    brokers, workers = [], []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "-m engine.broker" in line:
            brokers.append(proc)
        elif "-m engine.worker" in line:
            workers.append(proc)
    return brokers, workers


def rss_mib(procs: list[psutil.Process], *, with_children: bool) -> float:
    total = 0
    for proc in procs:
        try:
            family = [proc, *(proc.children(recursive=True) if with_children else [])]
            total += sum(p.memory_info().rss for p in family)
        except psutil.Error:
            pass
    return total / 2**20


def main(argv=None) -> int:
    args = parse_args(argv)
    broker_proc = None
    address = args.connect
    if address is None:
        front, back = free_port(), free_port()
        address = f"tcp://127.0.0.1:{front}"
        broker_proc = subprocess.Popen([sys.executable, "-m", "engine.broker", "--front", address,
                                        "--back", f"tcp://127.0.0.1:{back}", "--local-workers", str(args.processes),
                                        "--cache-mb", "0", "--log-level", "warning"])
    image = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (args.size, args.size, 3), np.uint8))[1]
    image = image.tobytes()
    samples: list[tuple[float, int, float, float]] = []
    done = [0]
    stop = threading.Event()

    def sample(started_s: float) -> None:
        brokers, workers = engine_processes(broker_proc.pid if broker_proc else None)
        row = (time.monotonic() - started_s, done[0], rss_mib(brokers, with_children=False),
               rss_mib(workers, with_children=True))
        samples.append(row)
        rate = row[1] / row[0] if row[0] else 0.0
        print(f"{row[0]:7.1f} s  {row[1]:7d} done  {rate:7.0f} tasks/s  broker {row[2]:6.1f} MiB  "
              f"workers {row[3]:6.1f} MiB", flush=True)

    try:
        with Client(address, timeout_s=300) as client:
            client.info(timeout_s=60)
            deadline_s = time.monotonic() + 60
            while sum(w["free"] for w in client.info()["workers"]) < 1 and time.monotonic() < deadline_s:
                time.sleep(0.2)
            started_s = time.monotonic()

            def sampler() -> None:
                while not stop.wait(args.sample_s):
                    sample(started_s)

            sample(started_s)
            thread = threading.Thread(target=sampler, daemon=True)
            thread.start()
            failed = 0
            for outcome in client.imap_unordered((image for _ in range(args.tasks)), args.pipeline,
                                                 window=args.window, return_exceptions=True,
                                                 options={"cache": False}):
                done[0] += 1
                failed += isinstance(outcome, BaseException)
            stop.set()
            thread.join()
            sample(started_s)
            stats = client.stats
    finally:
        stop.set()
        if broker_proc is not None:
            broker_proc.terminate()
            broker_proc.wait(30)
    elapsed_s = samples[-1][0]
    first, middle, last = samples[1] if len(samples) > 2 else samples[0], samples[len(samples) // 2], samples[-1]
    print(f"\nsummary: {args.tasks} tasks of {args.size}x{args.size} JPEG, pipeline {args.pipeline!r}, "
          f"{elapsed_s:.1f} s, {args.tasks / elapsed_s:.0f} tasks/s; failed {failed}; client stats {stats}")
    for name, row in (("start", first), ("middle", middle), ("end", last)):
        print(f"  {name:6s} at {row[0]:6.1f} s ({row[1]} done): broker {row[2]:.1f} MiB, workers {row[3]:.1f} MiB")
    return 0 if failed == 0 and stats["completed"] == args.tasks else 1


if __name__ == "__main__":
    raise SystemExit(main())
