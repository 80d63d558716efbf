"""Peak RSS of a pool process running one task: the figure for an operation's memory.

    python tools/op_peak.py watermark-wide segmentation-k16      # named cases (--list)
    python tools/op_peak.py --image 8000x8000 --pipeline sobel   # a gradient PNG of that size
    python tools/op_peak.py --worker-flag=--memory-budget-mb=256 sobel-64mp

Starts a broker and one worker with one pool process (learned models loaded, as by
default), then per case: resets the process's peak RSS (/proc/PID/clear_refs), sends the
task and prints the answer and the peak. Linux only; not part of the test suite.
"""
from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from cluster_helpers import Cluster
from rss_helpers import pool_process, task_peak


def gradient_png(width: int, height: int, channels: int = 3) -> bytes:
    """A smooth colour ramp (compresses to little: a 64 MP one is a few hundred KB)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    planes = [np.uint8(x + 0 * y), np.uint8(y + 0 * x), np.uint8((x + y) / 2)][:channels]
    image = planes[0] if channels == 1 else cv2.merge(planes)
    return cv2.imencode(".png", image)[1].tobytes()


def mark(width: int, height: int) -> str:
    return base64.b64encode(cv2.imencode(".png", np.full((height, width, 3), 200, np.uint8))[1]).decode()


CASES = {
    "watermark-wide": ((12000, 1), lambda: [{"op": "watermark", "params": {"mark": mark(8, 8), "width": 1}}]),
    "watermark-tall-mark": ((100, 100), lambda: [{"op": "watermark", "params": {"mark": mark(1, 65535), "width": 1}}]),
    "segmentation-k16": ((8000, 8000), lambda: "segmentation:k=16"),
    "text-64mp": ((8000, 8000), lambda: [{"op": "text", "params": {"text": "W" * 40, "height": 2000,
                                                                   "position": "centre"}}]),
    "sobel-64mp": ((8000, 8000), lambda: "sobel"),
    "sharpen-64mp": ((8000, 8000), lambda: "sharpen:threshold=4"),
    "hsv-64mp": ((8000, 8000), lambda: "hsv:hue=30"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*", help=f"named cases: {', '.join(CASES)}")
    p.add_argument("--image", help="WIDTHxHEIGHT of a gradient PNG, with --pipeline")
    p.add_argument("--pipeline", help="the pipeline to run on --image")
    p.add_argument("--worker-flag", action="append", default=[], help="a flag for the worker (repeat)")
    p.add_argument("--list", action="store_true", help="list the named cases")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    todo = [(name, *CASES[name]) for name in args.cases]
    if args.image:
        todo.append((args.pipeline, tuple(int(n) for n in args.image.split("x")), lambda: args.pipeline))
    cluster = Cluster(local_workers=0).start_broker(wait_slots=0)
    try:
        worker = cluster.add_worker(1, *args.worker_flag)
        cluster.wait_ready(2)
        pid = pool_process(worker.pid).pid
        with cluster.client(timeout_s=600) as client:
            for name, (width, height), pipeline in todo:
                outcome, before, peak = task_peak(client, pid, gradient_png(width, height), pipeline(), 600)
                answer = (getattr(outcome, "code", type(outcome).__name__) if isinstance(outcome, Exception)
                          else f"ok {outcome.width}x{outcome.height}")
                print(f"{name}: {width}x{height}: {answer}; pool process RSS {before / 2**20:.0f} MiB before, "
                      f"peak {peak / 2**20:.0f} MiB (+{(peak - before) / 2**20:.0f} MiB)", flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
