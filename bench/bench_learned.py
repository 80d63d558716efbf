"""Benchmarks of the learned operations (faces, anonymize, background) and their models.

    .venv/bin/python bench/bench_learned.py ops [--rounds 7] [--sizes photo,1080p,4K]
    .venv/bin/python bench/bench_learned.py load            # model load time, added memory per process
    .venv/bin/python bench/bench_learned.py engine --workers 2 [--tasks 60]   # end to end, real broker
    .venv/bin/python bench/bench_learned.py compare         # learned vs Haar: faces found / false hits

``ops`` times each operation on a decoded frame (no decode, no encode), one OpenCV and
one LiteRT thread as in the pool processes, median of ``--rounds`` after one warm-up
call; the Haar fallback (``faces_haar``) gets a single round (it takes seconds).
``load`` starts a fresh interpreter and reports its RSS before importing the engine,
after importing it, after ``engine.ops.warm_up`` and after one task of each operation,
with the load time per model. ``engine`` starts a broker with N local worker processes
(``--cache-mb 0``) and measures one-at-a-time latency and throughput with 4 x N tasks in
flight for each pipeline. Frames are the astronaut photograph (one face) resized.
``compare`` counts, for the learned detector (tiles 1, 2, 3; short range) and the Haar
fallback, the hand-noted faces found (IoU >= 0.5) and the false hits on sample
photographs and on composites made from them (grids, rotations, small faces in 1080p).
Print a Markdown table; ``--json PATH`` also writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")

SIZES = {"photo": (640, 480), "1080p": (1920, 1080), "4K": (3840, 2160)}
OPS = ["faces", "faces:model=short", "faces:tiles=2", "faces_haar", "anonymize", "anonymize:method=pixelate",
       "background", "background:mode=remove", "background:mode=mask"]
ENGINE_PIPELINES = ["faces:draw=false|json", "anonymize|jpeg:quality=85", "background|jpeg:quality=85"]
PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"


def _frame(size: str):
    """The photograph fitted into the frame (aspect kept: a stretched face is no face), grey borders."""
    import cv2

    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    w, h = SIZES[size]
    side = min(w, h)
    image = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    left, top = (w - side) // 2, (h - side) // 2
    return cv2.copyMakeBorder(image, top, h - side - top, left, w - side - left, cv2.BORDER_CONSTANT,
                              value=(128, 128, 128))


def bench_ops(rounds: int, sizes: list[str]) -> dict:
    import cv2

    from engine import ops

    cv2.setNumThreads(1)
    cache: dict = {}
    ops.warm_up(cache)
    out: dict = {}
    for text in OPS:
        step = ops.parse(text)[0]
        for size in sizes:
            frame = _frame(size)
            times = []
            n = 1 if step.op.name == "faces_haar" else rounds
            for i in range(n + (0 if n == 1 else 1)):
                ctx = ops.Context(cache=cache)
                started = time.perf_counter()
                step.op(frame, ctx, step.params)
                if i or n == 1:
                    times.append((time.perf_counter() - started) * 1000)
            out.setdefault(text, {})[size] = {"median_ms": round(statistics.median(times), 2),
                                              "faces": len(ctx.meta.get("faces", []))}
            print(f"  {text} {size}: {out[text][size]}", file=sys.stderr)
    return out


_LOAD_PROBE = r"""
import json, os, time
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
r = {"start_mb": rss_mb()}
import cv2; cv2.setNumThreads(1)
t = time.perf_counter(); from engine import ops; r["import_ms"] = (time.perf_counter() - t) * 1000
r["imported_mb"] = rss_mb()
cache = {}
r["load_ms"] = ops.warm_up(cache)
r["warm_mb"] = rss_mb()
data = open(os.environ["PHOTO"], "rb").read()
for p in ("faces", "anonymize", "background"):
    t = time.perf_counter(); ops.run(data, p, cache=cache); r["first_" + p + "_ms"] = (time.perf_counter() - t) * 1000
r["after_tasks_mb"] = rss_mb()
print(json.dumps(r))
"""


def bench_load() -> dict:
    env = {**os.environ, "PHOTO": str(PHOTO), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _LOAD_PROBE], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    r["models_added_mb"] = round(r["warm_mb"] - r["imported_mb"], 1)
    r["tasks_added_mb"] = round(r["after_tasks_mb"] - r["warm_mb"], 1)
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}


def bench_engine(workers: int, tasks: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from cluster_helpers import Cluster  # the test suite's broker + local workers, on free loopback ports

    from engine.ops.codec import encode

    data = encode(_frame("photo"), "jpeg", 90)
    cluster = Cluster(local_workers=workers).start_broker()
    out: dict = {}
    try:
        with cluster.client(timeout_s=120) as client:
            for pipeline in ENGINE_PIPELINES:
                list(client.map([data] * (2 * workers), pipeline, window=2 * workers))  # every process warm
                lat = []
                for _ in range(max(10, tasks // 3)):
                    started = time.perf_counter()
                    client.process(data, pipeline)
                    lat.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                list(client.map([data] * tasks, pipeline, window=4 * workers))
                elapsed_s = time.perf_counter() - started
                lat.sort()
                out[pipeline] = {"latency_median_ms": round(statistics.median(lat), 1),
                                 "latency_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
                                 "throughput_per_s": round(tasks / elapsed_s, 1)}
                print(f"  {pipeline}: {out[pipeline]}", file=sys.stderr)
    finally:
        cluster.stop()
    return {"workers": workers, "frame": "photo 640x480 JPEG", "pipelines": out}


HAND_FACE = [178, 75, 97, 105]  # the astronaut's face, noted by hand (as in tests/test_ops_learned.py)
COMPARE = ["faces:draw=false", "faces:draw=false,tiles=2", "faces:draw=false,tiles=3",
           "faces:draw=false,model=short", "faces_haar:draw=false"]


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def _compare_cases() -> dict:
    import cv2
    import numpy as np

    data = ROOT / "tests" / "data"
    photo = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    scaled = lambda f, dx=0, dy=0: [round(HAND_FACE[0] * f) + dx, round(HAND_FACE[1] * f) + dy,  # noqa: E731
                                    round(HAND_FACE[2] * f), round(HAND_FACE[3] * f)]

    def grid(n):
        side = 1020 // n
        tile = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        return (np.vstack([np.hstack([tile] * n)] * n),
                [scaled(side / 512, i * side, j * side) for i in range(n) for j in range(n)])

    def rotated(deg):
        m = cv2.getRotationMatrix2D((256, 256), deg, 1.0)
        cx, cy = m @ [HAND_FACE[0] + HAND_FACE[2] / 2, HAND_FACE[1] + HAND_FACE[3] / 2, 1]
        return (cv2.warpAffine(photo, m, (512, 512), borderMode=cv2.BORDER_REFLECT),
                [[round(cx - 50), round(cy - 52), 100, 105]])

    def in_1080p(side):
        canvas = np.full((1080, 1920, 3), 128, np.uint8)
        canvas[100:100 + side, 200:200 + side] = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        return canvas, [scaled(side / 512, 200, 100)]

    cases = {"astronaut": (photo, [HAND_FACE]),
             "camera": (cv2.imread(str(data / "camera.jpg"), cv2.IMREAD_COLOR), [[195, 118, 70, 87]])}
    for name in ("chelsea", "coffee", "coins", "rocket", "hubble_deep_field", "retina"):
        cases[name] = (cv2.imread(str(data / f"{name}.jpg"), cv2.IMREAD_COLOR), [])
    cases.update({f"grid{n}x{n}": grid(n) for n in (2, 3, 4)})
    cases.update({f"rotated{d}": rotated(d) for d in (30, 60, 90)})
    cases.update({f"face{round(s * 97 / 512)}px_in_1080p": in_1080p(s) for s in (512, 256, 128)})
    return cases


def bench_compare() -> dict:
    import cv2

    from engine import ops

    cv2.setNumThreads(1)
    cache: dict = {}
    ops.warm_up(cache)
    out: dict = {}
    for name, (image, expected) in _compare_cases().items():
        data = cv2.imencode(".png", image)[1].tobytes()
        for pipeline in COMPARE:
            _, meta = ops.run(data, pipeline + "|png", cache=cache)
            boxes = [f["box"] for f in meta["faces"]]
            found = sum(any(_iou(e, b) >= 0.5 for b in boxes) for e in expected)
            false = sum(not any(_iou(e, b) >= 0.5 for e in expected) for b in boxes)
            out.setdefault(name, {})[pipeline] = {"faces": len(expected), "found": found, "false": false}
        print(f"  {name}: " + ", ".join(f"{p}: {r['found']}/{r['faces']} (+{r['false']} false)"
                                        for p, r in out[name].items()), file=sys.stderr)
    return out


def _table_compare(res: dict) -> str:
    lines = ["| image | faces | " + " | ".join(f"`{p.replace(':draw=false', '').replace(',', ' ')}`"
                                              for p in COMPARE) + " |", "| --- | --- |" + " --- |" * len(COMPARE)]
    for name, by in res.items():
        first = next(iter(by.values()))
        lines.append(f"| {name} | {first['faces']} | " + " | ".join(f"{by[p]['found']} found, {by[p]['false']} false"
                                                                     for p in COMPARE) + " |")
    return "\n".join(lines)


def _table_ops(res: dict, sizes: list[str]) -> str:
    lines = ["| operation | " + " | ".join(sizes) + " |", "| --- |" + " --- |" * len(sizes)]
    for text, by_size in res.items():
        lines.append(f"| `{text}` | " + " | ".join(f"{by_size[s]['median_ms']} ms ({by_size[s]['faces']} f)"
                                                    if s in by_size else "-" for s in sizes) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("what", choices=("ops", "load", "engine", "compare"))
    p.add_argument("--rounds", type=int, default=7, help="ops: timed calls per operation and size")
    p.add_argument("--sizes", default="photo,1080p,4K", help="ops: frame sizes, from " + ", ".join(SIZES))
    p.add_argument("--workers", type=int, default=2, help="engine: local worker processes")
    p.add_argument("--tasks", type=int, default=60, help="engine: tasks per throughput run")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.what == "ops":
        sizes = args.sizes.split(",")
        res = bench_ops(args.rounds, sizes)
        print(_table_ops(res, sizes))
    elif args.what == "compare":
        res = bench_compare()
        print(_table_compare(res))
    elif args.what == "load":
        res = bench_load()
        print(json.dumps(res, indent=1))
    else:
        res = bench_engine(args.workers, args.tasks)
        print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
