"""Same-host payloads on and off, one broker with local workers: the machine's CPU per image.

    python bench/shm_effect.py [--sizes photo,1080p,4k] [--pipeline noop] [--rounds 2]

Starts ``python -m engine.broker --local-workers 2`` (cache off) and sends each size class's
benchmark JPEGs through ``Client.imap_unordered`` (window 32), alternating a client with
shared memory (every image by reference: ``ENGINE_SHM_MIN_BYTES`` does not apply here) and one
without, ``--rounds`` times. It reads the whole machine's busy CPU time from /proc/stat, so the
broker, the pool processes, the client and the kernel all count: with ``noop`` what is left is
the cost of moving the images. Linux only; run it on an idle machine. ``engine.shm.MIN_BYTES``
is chosen from it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import workloads as W
from bench.peers.engine import broker_ready, start_broker


def busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, user + system + irq)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def one(front: str, images: list[bytes], pipeline: str, shared: bool, repeat: int) -> tuple[float, float, int]:
    from engine import Client, shm

    shm.MIN_BYTES = 0
    with Client(front, timeout_s=120, shared_memory=shared) as client:
        for _ in client.imap_unordered(images * 5, pipeline, window=32, options={"cache": False}):
            pass  # warm up (and the broker's offer and our proof)
        b0, t0, n = busy_s(), time.perf_counter(), 0
        for _ in client.imap_unordered(images * repeat, pipeline, window=32, options={"cache": False}):
            n += 1
        b1, t1 = busy_s(), time.perf_counter()
        sent = client.stats["by_reference"]
    return n / (t1 - t0), (b1 - b0) / n * 1000, sent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/shm_effect.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="photo,1080p,4k")
    p.add_argument("--pipeline", default="noop")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    proc, front, _ = start_broker(2, [])
    try:
        broker_ready(front, 4)
        print(f"{'size':6} {'input KB':>9} {'shared memory':>28} {'sockets':>28} {'CPU ratio':>10}")
        for size in args.sizes.split(","):
            images = list(W.image_set(size).images)
            repeat = {"photo": 300, "1080p": 60}.get(size, 20)
            on, off = [], []
            for _ in range(args.rounds):
                on.append(one(front, images, args.pipeline, True, repeat))
                off.append(one(front, images, args.pipeline, False, repeat))
            (r1, c1, s1), (r0, c0, _) = min(on, key=lambda x: x[1]), min(off, key=lambda x: x[1])
            assert s1 > 0, "nothing went by reference: is shared memory off on this host?"
            kb = sum(map(len, images)) / len(images) / 1024
            print(f"{size:6} {kb:>9.0f} {r1:>9.0f} img/s {c1:>7.3f} ms CPU {r0:>9.0f} img/s {c0:>7.3f} ms CPU "
                  f"{c1 / c0:>9.2f}x")
    finally:
        proc.terminate()
        proc.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
