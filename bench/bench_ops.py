"""Benchmarks of the image operations and of the planner (pytest-benchmark).

Run:  .venv/bin/python -m pytest bench/bench_ops.py --benchmark-only -p no:cacheprovider \
          --benchmark-json=/tmp/ops.json                        (about 2.5 minutes)
      .venv/bin/python -m pytest bench/bench_ops.py --benchmark-only -p no:cacheprovider \
          -k test_planner --benchmark-min-rounds=50 --benchmark-json=/tmp/ops_planner.json
Then: .venv/bin/python tools/gen_ops_doc.py --bench /tmp/ops.json /tmp/ops_planner.json
      (rewrites docs/operations.md; the second file's planner figures replace the first's)

Each transform is timed on the decoded array alone (no decode, no encode) at 640x480,
1920x1080 and 3840x2160; output formats are timed as the encode they cause. The planner
is timed end to end, bytes in and bytes out, with ``plan=True`` against ``plan=False``
(the naive decode -> operate -> encode). Test images are made in memory by resizing a
sample photograph.
"""
from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest
import simplejpeg

from engine import ops
from engine.ops import codec

cv2.setNumThreads(1)  # as in the engine's pool processes: one process per core, one OpenCV thread
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SIZES = {"640x480": (640, 480), "1080p": (1920, 1080), "4K": (3840, 2160)}
HEAVY = {"denoise", "faces", "bilateral", "segmentation", "clahe"}  # fewer rounds on large frames
MARK = base64.b64encode(cv2.imencode(".png", cv2.resize(
    cv2.imread(str(DATA / "coins.png"), cv2.IMREAD_UNCHANGED), (96, 76)))[1].tobytes()).decode()
PARAMS = {"resize": {"width": 0.5}, "text": {"text": "(c) engine 2026"}, "watermark": {"mark": MARK},
          "crop": {"x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5}}


def photo(size: str, name: str = "astronaut.jpg") -> np.ndarray:
    """A sample photograph stretched to one of SIZES (astronaut: it has a face)."""
    image = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
    return cv2.resize(image, SIZES[size], interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module", params=list(SIZES))
def frame(request):
    return request.param, photo(request.param)


@pytest.fixture(scope="module")
def warm_cache():
    """Per-process state as a worker has it after its first tasks (cascade, tables)."""
    cache: dict = {}
    ops.run(simplejpeg.encode_jpeg(photo("640x480"), 90, colorspace="BGR"), "faces|clahe", cache=cache)
    return cache


def params_for(name: str, width: int, height: int) -> dict:
    """Default parameters, with sizes given as fractions turned into pixels."""
    raw = dict(PARAMS.get(name, {}))
    for key, value in raw.items():
        if isinstance(value, float) and key in ("x", "width"):
            raw[key] = int(value * width)
        elif isinstance(value, float) and key in ("y", "height"):
            raw[key] = int(value * height)
    (step,) = ops.parse([{"op": name, "params": raw}])
    return step.params


TRANSFORMS = sorted(n for n, op in ops.REGISTRY.items()
                    if op.kind == "transform" and not op.fn.__module__.endswith(".testing"))  # no fault injection
FORMATS = sorted(n for n, op in ops.REGISTRY.items() if op.kind == "format")


@pytest.mark.parametrize("name", TRANSFORMS)
def test_operation(benchmark, frame, warm_cache, name):
    size, image = frame
    op = ops.REGISTRY[name]
    params = params_for(name, image.shape[1], image.shape[0])
    benchmark.group = f"op {size}"
    benchmark.extra_info.update(op=name, size=size)

    def once():
        return op(image, ops.Context(cache=warm_cache), params)

    if name in HEAVY and size != "640x480":
        out = benchmark.pedantic(once, rounds=2, iterations=1)
    else:
        out = benchmark(once)
    assert out.shape[0] >= 1


@pytest.mark.parametrize("name", FORMATS)
def test_output_format_encode(benchmark, frame, name):
    size, image = frame
    quality = 3 if name == "png" else 90
    benchmark.group = f"op {size}"
    benchmark.extra_info.update(op=name, size=size)
    out = benchmark(codec.encode, image, name, quality)
    assert len(out) > 100


@pytest.mark.parametrize("pipeline", ["grayscale", "resize:width=512,height=512"])
@pytest.mark.parametrize("planned", [True, False], ids=["planned", "naive"])
def test_planner(benchmark, frame, warm_cache, pipeline, planned):
    size, image = frame
    data = simplejpeg.encode_jpeg(image, 90, colorspace="BGR")
    benchmark.group = f"planner {pipeline} {size}"
    benchmark.extra_info.update(pipeline=pipeline, size=size, planned=planned)
    out, meta = benchmark(ops.run, data, pipeline, cache=warm_cache, plan=planned)
    assert meta["format"] == "jpeg" and out[:2] == b"\xff\xd8"
