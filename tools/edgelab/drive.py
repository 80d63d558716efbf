"""The scenario client: runs inside the lab's client host, sends a batch, counts every task.

Each task's input has its own size (width ``--width-px`` + i mod 300, height 3/4 of
that + i div 300), so a result carrying another task's output shows as ``wrong``, and a
long batch repeats the same sizes instead of growing. Prints ``go`` when the batch starts (the lab times its
link events from that line), then one JSON line: submitted, completed, failed (by code),
lost (no answer before the batch timeout), wrong, duplicated (second answers the client
dropped), the batch time, images/s, latency p50/p99 (submit to answer) and, per worker,
tasks done, the worker's own mean time per task and when its last answer came (seconds
after the start: the batch's tail behind a slow worker is the batch time less the fast
workers' last answer).

    python -m tools.edgelab.drive --connect tcp://10.77.0.10:5555 --tasks 300 --wait-workers 2
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
from pathlib import Path

import cv2

from engine import Client
from engine.errors import EngineError, TaskError, TaskTimeout

SOURCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "chelsea.jpg"
WAIT_WORKERS_TIMEOUT_S = 60.0
SIZES_CYCLE = 300


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connect", required=True, help="the broker's client endpoint")
    p.add_argument("--tasks", type=int, default=300, help="images in the batch (default: 300)")
    p.add_argument("--pipeline", default="grayscale", help="pipeline for every image (default: grayscale)")
    p.add_argument("--window", type=int, default=16, help="tasks in flight at once (default: 16)")
    p.add_argument("--width-px", type=int, default=320,
                   help="width of the first image; each next is 1 px wider (300 widths, then again 1 px taller)")
    p.add_argument("--wait-workers", type=int, default=1, help="start once the broker lists this many workers")
    p.add_argument("--timeout-s", type=float, default=120.0, help="per task; unanswered by then: lost")
    return p.parse_args(argv)


def images(count: int, width_px: int) -> list[bytes]:
    src = cv2.imread(str(SOURCE))
    out = []
    for i in range(count):
        _ok, buf = cv2.imencode(".jpg", cv2.resize(src, size_of(i, width_px)), [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(buf.tobytes())
    return out


def size_of(i: int, width_px: int) -> tuple[int, int]:
    """Task i's (width, height): unique per task, cycling over SIZES_CYCLE widths."""
    w = width_px + i % SIZES_CYCLE
    return w, w * 3 // 4 + i // SIZES_CYCLE


def wait_workers(client: Client, count: int) -> dict:
    deadline_s = time.monotonic() + WAIT_WORKERS_TIMEOUT_S
    info: dict = {}
    while time.monotonic() < deadline_s:
        try:
            info = client.info(timeout_s=2.0)
            if len(info.get("workers", [])) >= count:
                return info
        except EngineError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the broker did not list {count} workers within {WAIT_WORKERS_TIMEOUT_S} s: {info}")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def run(args: argparse.Namespace) -> dict:
    data = images(args.tasks, args.width_px)
    counts = collections.Counter()
    failed = collections.Counter()
    latencies_ms: list[float] = []
    per_worker: dict[str, list[float]] = collections.defaultdict(list)
    last_by_worker: dict[str, float] = {}
    window = threading.Semaphore(args.window)
    lock = threading.Lock()
    last_done_s = [0.0]
    with Client(args.connect, timeout_s=args.timeout_s) as client:
        wait_workers(client, args.wait_workers)
        print("go", flush=True)
        start_s = time.monotonic()
        futures = []

        def done(i: int, sent_s: float, fut) -> None:
            now_s = time.monotonic()
            with lock:
                try:
                    result = fut.result()
                except TaskTimeout:
                    counts["lost"] += 1
                except TaskError as exc:
                    failed[exc.code] += 1
                except Exception as exc:  # BrokerUnavailable and the like: an answer, but not a result
                    failed[type(exc).__name__] += 1
                else:
                    right = (result.width, result.height) == size_of(i, args.width_px)
                    counts["completed" if right else "wrong"] += 1
                    latencies_ms.append((now_s - sent_s) * 1000)
                    per_worker[result.worker].append(result.meta.get("worker_ms", 0.0))
                    last_by_worker[result.worker] = now_s - start_s
                last_done_s[0] = now_s
            window.release()

        for i, image in enumerate(data):
            window.acquire()
            sent_s = time.monotonic()
            fut = client.submit(image, args.pipeline)
            fut.add_done_callback(lambda f, i=i, s=sent_s: done(i, s, f))
            futures.append(fut)
        for fut in futures:  # every future completes: result, error or the client's timeout
            try:
                fut.exception(timeout=args.timeout_s + 30)
            except Exception:
                pass
        time.sleep(0.2)  # let the last callbacks finish
        stats = client.stats
        try:  # the broker's own counters (requeued, expired leases...): numbers at the top of INFO
            info = client.info(timeout_s=5.0)
            broker_counters = {k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        except EngineError as exc:
            broker_counters = {"error": str(exc)}
    elapsed_s = max(1e-9, last_done_s[0] - start_s)
    unanswered = args.tasks - counts["completed"] - counts["wrong"] - counts["lost"] - sum(failed.values())
    return {
        "submitted": args.tasks, "completed": counts["completed"], "failed": sum(failed.values()),
        "failed_by_code": dict(failed), "lost": counts["lost"] + unanswered, "wrong": counts["wrong"],
        "duplicated": stats.get("duplicates", 0), "resent": stats.get("resent", 0),
        "batch_s": round(elapsed_s, 3), "images_per_s": round(counts["completed"] / elapsed_s, 2),
        "p50_ms": _round(percentile(latencies_ms, 50)), "p99_ms": _round(percentile(latencies_ms, 99)),
        "input_bytes_mean": sum(map(len, data)) // max(1, len(data)),
        "broker_counters": broker_counters,
        "workers": {w: {"tasks": len(v), "task_ms_mean": _round(sum(v) / len(v)),
                        "last_done_s": round(last_by_worker[w], 3)} for w, v in per_worker.items()},
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def main(argv=None) -> int:
    result = run(parse_args(argv))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
