"""What the broker's result cache does for a repeated batch.

    .venv/bin/python bench/cache_effect.py                       # 1080p frames, a 3-step chain
    .venv/bin/python bench/cache_effect.py --size photo --pipeline grayscale

One broker with ``--local-workers N`` and its cache on (the default size). The same batch
of distinct images is sent twice through ``Client.map``: the first pass fills the cache,
the second should be answered by the broker alone. The figures are each pass's wall time
and images/s, how many answers said ``cache: hit``, and the broker's own hit/miss counters
from its INFO answer, so a reader can check that no worker ran in the second pass.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workloads as W
from bench.curve_cost import READY_TIMEOUT_S, _port
from engine import Client


def batch_of(size: str, count: int) -> list[bytes]:
    """``count`` distinct JPEGs of one size: the image set's frames, each with its number written on it."""
    import cv2
    import numpy as np

    base = W.image_set(size).images
    out = []
    for i in range(count):
        image = cv2.imdecode(np.frombuffer(base[i % len(base)], np.uint8), cv2.IMREAD_COLOR)
        cv2.putText(image, str(i), (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, W.JPEG_QUALITY])[1].tobytes())
    if len(set(out)) != count:
        raise RuntimeError("the batch does not hold distinct images")
    return out


def one_pass(client: Client, batch: list[bytes], pipeline: str, window: int) -> tuple[float, int]:
    started_s = time.perf_counter()
    hits = sum(1 for r in client.map(batch, pipeline, window=window) if r.meta.get("cache") == "hit")
    return time.perf_counter() - started_s, hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="local worker processes [2]")
    parser.add_argument("--size", choices=sorted(W.SIZES), default="1080p", help="image size [1080p]")
    parser.add_argument("--count", type=int, default=40, help="distinct images in the batch [40]")
    parser.add_argument("--pipeline", default="resize:width=1280|sharpen|webp:quality=80",
                        help="pipeline [resize:width=1280|sharpen|webp:quality=80]")
    parser.add_argument("--window", type=int, default=8, help="tasks in flight [8]")
    args = parser.parse_args(argv)

    batch = batch_of(args.size, args.count)
    front, back = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
    cmd = [sys.executable, "-m", "engine.broker", "--front", front, "--back", back,
           "--local-workers", str(args.workers), "--log-level", "warning"]
    broker = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "ENGINE_LOG_LEVEL": "warning"})
    try:
        with Client(front, timeout_s=120) as client:
            deadline_s = time.monotonic() + READY_TIMEOUT_S
            while sum(w["free"] for w in client.info(READY_TIMEOUT_S)["workers"]) < args.workers:
                if time.monotonic() > deadline_s:
                    raise TimeoutError("workers did not come up")
                time.sleep(0.2)
            # Warm every pool process on other images (not cached: the option turns the cache off).
            for data in W.image_set(args.size).images:
                client.submit(data, args.pipeline, options={"cache": False}).result()
            before = client.info(10)["cache"]
            first_s, first_hits = one_pass(client, batch, args.pipeline, args.window)
            middle = client.info(10)["cache"]
            second_s, second_hits = one_pass(client, batch, args.pipeline, args.window)
            after = client.info(10)["cache"]
    finally:
        broker.terminate()
        broker.wait(30)
    n = len(batch)
    print(f"{n} distinct {args.size} images, pipeline {args.pipeline!r}, {args.workers} local workers")
    print(f"first pass:  {first_s * 1000:8.1f} ms  {n / first_s:8.1f} img/s  cache hits {first_hits}/{n}"
          f"  (broker: +{middle['hits'] - before['hits']} hits, +{middle['misses'] - before['misses']} misses)")
    print(f"second pass: {second_s * 1000:8.1f} ms  {n / second_s:8.1f} img/s  cache hits {second_hits}/{n}"
          f"  (broker: +{after['hits'] - middle['hits']} hits, +{after['misses'] - middle['misses']} misses)")
    print(f"speed-up of the repeated batch: {first_s / second_s:.1f}x; cache holds {after['entries']} entries, "
          f"{after['bytes'] / 2**20:.1f} MiB of {after['max_bytes'] / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
