"""Property tests: random valid pipelines on random images never raise anything but the
engine's own errors (a worker must never crash on a task)."""
from __future__ import annotations

import base64

import cv2
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ops
from engine.errors import EngineError, ImageError
from engine.ops.base import REQUIRED

pytestmark = pytest.mark.timeout(120)

# Small images and a small pixel limit keep every example fast; going over it is an
# engine error (ImageTooLarge), which is an allowed outcome.
LIMITS = ops.Limits(max_pixels=200_000)
SETTINGS = settings(max_examples=int(__import__("os").environ.get("OPS_EXAMPLES", 60)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MARK = base64.b64encode(cv2.imencode(".png", np.full((6, 8, 4), 200, np.uint8))[1].tobytes()).decode()

# Fault-injection operations (engine/ops/testing.py, registered only by a worker run with --test-ops)
# crash or hang on purpose: never draw them.
OPERATIONS = sorted(n for n, op in ops.REGISTRY.items() if not op.fn.__module__.endswith(".testing"))
hex_colour = st.text("0123456789abcdef", min_size=6, max_size=6) | st.text("0123456789ABCDEF", min_size=8, max_size=8)


def value_for(op: str, p) -> st.SearchStrategy:
    if p.choices:
        return st.sampled_from(p.choices)
    if p.type is bool:
        return st.booleans()
    if p.type is int:
        return st.integers(int(p.min if p.min is not None else -1000), int(p.max if p.max is not None else 1000))
    if p.type is float:
        return st.floats(p.min if p.min is not None else -1000, p.max if p.max is not None else 1000,
                         allow_nan=False)
    if p.name in ("colour", "background"):
        return hex_colour
    if p.name == "mark":
        return st.just(MARK)
    return st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30)


@st.composite
def steps(draw):
    name = draw(st.sampled_from(OPERATIONS))
    op = ops.REGISTRY[name]
    params = {}
    for p in op.params:
        if p.default is REQUIRED or draw(st.booleans()):
            params[p.name] = draw(value_for(name, p))
    if name == "resize" and not params.get("width") and not params.get("height"):
        params["width"] = draw(st.integers(1, 300))
    if name in ("median",) and params.get("size", 5) % 2 == 0:
        params["size"] += 1
    if name == "threshold" and params.get("block", 11) % 2 == 0:
        params["block"] += 1
    return {"op": name, "params": params}


def pipelines(max_size: int):
    """Valid pipelines of 1 to ``max_size`` steps: format steps go last (a rule of the syntax),
    kept in the order drawn (the last one chooses the output format)."""
    return st.lists(steps(), min_size=1, max_size=max_size).map(
        lambda drawn: sorted(drawn, key=lambda s: ops.REGISTRY[s["op"]].kind == "format"))


@st.composite
def images(draw):
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    channels = draw(st.sampled_from([1, 3, 4]))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    image = pixels[:, :, 0] if channels == 1 else pixels
    ext = draw(st.sampled_from([".png", ".jpg", ".webp", ".bmp", ".tiff"]))
    if ext == ".jpg" and channels == 4:
        image = image[:, :, :3]
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


@SETTINGS
@given(images(), pipelines(5))
def test_random_valid_pipelines_on_random_images_never_crash(data, pipeline):
    ops.parse(pipeline)  # valid by construction: parsing must not raise
    try:
        out, meta = ops.run(data, pipeline, limits=LIMITS)
    except EngineError:
        return
    assert out and meta["width"] >= 1 and meta["height"] >= 1 and meta["channels"] in (1, 3, 4)
    assert msgpack.unpackb(msgpack.packb(meta)) == meta  # the reply's metadata travels on the wire
    text = ops.canonical(pipeline)
    assert ops.canonical(text) == text
    assert [(s.op.name, s.params) for s in ops.parse(text)] == [(s.op.name, s.params) for s in ops.parse(pipeline)]


@SETTINGS
@given(images(), pipelines(4))
def test_planned_runs_have_the_same_shape_as_unplanned(data, pipeline):
    try:
        _, planned = ops.run(data, pipeline, limits=LIMITS)
    except EngineError:
        return
    _, naive = ops.run(data, pipeline, limits=LIMITS, plan=False)
    assert (planned["width"], planned["height"], planned["format"]) == (naive["width"], naive["height"],
                                                                         naive["format"])


@settings(max_examples=60, deadline=None)
@given(images(), st.data())
def test_damaged_inputs_are_image_errors(data, draw):
    cut = draw.draw(st.integers(0, len(data)))
    flips = draw.draw(st.lists(st.tuples(st.integers(0, max(0, len(data) - 1)), st.integers(0, 255)), max_size=8))
    damaged = bytearray(data[:cut])
    for at, value in flips:
        if at < len(damaged):
            damaged[at] = value
    try:
        out, meta = ops.run(bytes(damaged), "flip|png", limits=LIMITS)
    except ImageError:
        return
    assert out.startswith(b"\x89PNG") and meta["width"] >= 1
