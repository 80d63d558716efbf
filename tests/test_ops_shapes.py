"""Every operation on extreme shapes answers a result or a user error (bad_parameter,
bad_image, image_too_large), never 'internal' (an unexpected exception)."""
from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from ops_helpers import png

from engine import ops
from engine.errors import ImageError, InternalError, TaskError
from engine.ops.base import REGISTRY, Context, Operation

pytestmark = pytest.mark.timeout(120)

SHAPES = [(1, 1), (2, 2), (1, 20000), (20000, 1), (1, 300, 3), (300, 1, 4), (3, 3, 4)]
MARK = base64.b64encode(png(np.full((8, 8, 3), 200, np.uint8))).decode()
REQUIRED = {"text": {"text": "Hi"}, "watermark": {"mark": MARK}, "resize": {"width": 64}}


def variants(op) -> list[dict]:
    """The defaults, then each parameter alone at its extremes (or each of its choices)."""
    out = [{}]
    for p in op.params:
        values = list(p.choices) if p.choices else [p.type(v) for v in (p.min, p.max) if v is not None]
        out += [{p.name: v} for v in values]
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_operation_on_extreme_shapes_never_fails_internally(shape):
    data = png(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    failures = []
    for name, op in sorted(REGISTRY.items()):
        if op.kind != "transform" or name in ("sleep", "crash", "hang"):
            continue
        for extra in variants(op):
            params = {**REQUIRED.get(name, {}), **extra}
            try:
                ops.run(data, [{"op": name, "params": params}, {"op": "png"}])
            except TaskError as exc:
                if isinstance(exc, InternalError) or exc.code == "internal":
                    failures.append(f"{name} {params}: {exc}")
            except Exception as exc:  # what the worker would answer as 'internal'
                failures.append(f"{name} {params}: {type(exc).__name__}: {str(exc)[:120]}")
    assert not failures, "\n".join(failures)


def test_faces_on_a_thin_line_finds_none():
    _, meta = ops.run(png(np.zeros((1, 20000), np.uint8)), "faces|png")
    assert meta["faces"] == []


def test_opencv_refusing_a_shape_is_a_bad_image_naming_the_operation():
    op = Operation(name="shrink-to-nothing", fn=lambda image, ctx: cv2.resize(image, (0, 0)), params=(), help="")
    with pytest.raises(ImageError, match=r"shrink-to-nothing.*1x20000") as caught:
        op(np.zeros((20000, 1), np.uint8), Context(), {})
    assert caught.value.code == "bad_image"
