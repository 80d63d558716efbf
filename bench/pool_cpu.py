"""CPU per task of the pool processes' own messaging (issue 23 item 4), beside the client's.

    python bench/pool_cpu.py [--tasks 10000] [--side-px 16] [--window 64]

Starts ``python -m engine.broker --local-workers 2`` (cache off), sends TASKS ``grayscale``
tasks of a tiny JPEG (SIDE_PX square: the pipeline is a few tens of µs) through
``Client.imap_unordered`` and reads each process's CPU time from /proc. A pool process's
CPU per task less the time its pipeline ran (``worker_ms`` in each result's meta, wall time
of a single-threaded call: close to its CPU) is what its messaging and bookkeeping cost:
receiving, decoding the header, the slot table, encoding and sending the answer. Linux only;
run it on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.broker_cpu import process_cpu_s, thread_cpu_s
from bench.peers.engine import broker_ready, start_broker


def tiny_jpeg(side_px: int) -> bytes:
    import cv2
    import numpy as np

    image = (np.arange(side_px * side_px * 3, dtype=np.uint8).reshape(side_px, side_px, 3) * 7) % 255
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--side-px", type=int, default=16)
    p.add_argument("--window", type=int, default=64)
    args = p.parse_args(argv)
    import psutil

    from engine import Client

    broker, front, _ = start_broker(2, [])
    try:
        broker_ready(front, 4)
        supervisors = psutil.Process(broker.pid).children()
        pool = [c.pid for s in supervisors for c in s.children() if "resource_tracker" not in " ".join(c.cmdline())]
        image = tiny_jpeg(args.side_px)
        with Client(front, timeout_s=120) as client:
            for _ in client.imap_unordered([image] * 500, "grayscale", window=args.window):  # warm up
                pass
            p0, c0, b0 = [process_cpu_s(pid) for pid in pool], thread_cpu_s(os.getpid()), process_cpu_s(broker.pid)
            t0 = time.perf_counter()
            pipeline_ms = 0.0
            done = 0
            for result in client.imap_unordered([image] * args.tasks, "grayscale", window=args.window):
                pipeline_ms += result.meta.get("worker_ms", 0.0)
                done += 1
            wall_s = time.perf_counter() - t0
            p1, c1, b1 = [process_cpu_s(pid) for pid in pool], thread_cpu_s(os.getpid()), process_cpu_s(broker.pid)
            hot = client.info().get("hot_path")
    finally:
        broker.terminate()
        broker.wait(30)
    per = 1e6 / done
    pool_us = sum(a - b for a, b in zip(p1, p0)) * per
    run_us = pipeline_ms * 1000 / done
    client_us = sum(c1[t] - c0.get(t, 0) for t in c1) * per
    print(f"{done} grayscale tasks of a {args.side_px}x{args.side_px} JPEG ({len(image)} bytes) in {wall_s:.2f} s "
          f"({done / wall_s:.0f}/s); CPU per task: pool processes {pool_us:.0f} us, of which the pipeline "
          f"{run_us:.0f} us (worker_ms): messaging and bookkeeping {pool_us - run_us:.0f} us; client "
          f"{client_us:.0f} us; broker process {(b1 - b0) * per:.0f} us; hot path "
          f"{'compiled' if hot and hot.get('compiled') else 'pure Python' if hot else 'off'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
