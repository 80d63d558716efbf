"""Every output format the registry offers, on images at and past each encoder's limits,
through a real worker: each answer is a result of the input's size or a refusal that says
why (image_too_large, bad_image), never ``internal`` (simplejpeg's ValueError on a side over
65,500 px was one)."""
import cv2
import numpy as np

from engine.errors import ImageError, ImageTooLarge
from engine.ops import base

# 1 px tall or wide, so each is a few hundred bytes as PNG: around the JPEG (65,500) and
# WebP (16,383) limits, and a side no codec takes.
SIDES = (1, 16_383, 16_384, 65_500, 65_501, 200_000)
CHANNELS = (1, 3, 4)  # grey, colour, colour and alpha
TIMEOUT_S = 60


def _png(width: int, height: int, channels: int) -> bytes:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return cv2.imencode(".png", np.full(shape, 128, np.uint8))[1].tobytes()


def _cases() -> list[tuple[bytes, str, tuple[int, int]]]:
    formats = sorted(name for name, op in base.REGISTRY.items() if op.kind == "format")
    pipelines = [*formats, "noop"]  # noop: the input's own format (PNG here, or PNG for a BMP)
    shapes = {(side, 1) for side in SIDES} | {(1, side) for side in SIDES}
    cases = [(_png(w, h, c), p, (w, h)) for w, h in sorted(shapes) for c in CHANNELS for p in pipelines]
    # A BMP wider than PNG's 1,000,000 px per side: its default output is PNG.
    wide = cv2.imencode(".bmp", np.zeros((1, 1_000_001), np.uint8))[1].tobytes()
    return cases + [(wide, p, (1_000_001, 1)) for p in pipelines]


def test_every_output_format_at_extreme_shapes_answers_a_result_or_a_reason(cluster_factory):
    cluster = cluster_factory(local_workers=1).start_broker()
    cases = _cases()
    with cluster.client(timeout_s=TIMEOUT_S) as client:
        futures = [client.submit(data, pipeline) for data, pipeline, _ in cases]
        answers = [f.exception(TIMEOUT_S) or f.result(0) for f in futures]
        assert client.process(_png(8, 8, 3), "jpeg").width == 8  # the worker is still there
    wrong = [(f"{pipeline} on {w}x{h}", answer) for (_, pipeline, (w, h)), answer in zip(cases, answers)
             if isinstance(answer, Exception) and not isinstance(answer, ImageError)]
    assert not wrong, wrong  # every refusal is image_too_large or bad_image: none internal
    refused = {}
    for (_, pipeline, (w, h)), answer in zip(cases, answers):
        where = f"{pipeline} on {w}x{h}"
        if isinstance(answer, Exception):
            assert f"{w}x{h}" in answer.message and "px" in answer.message, (where, answer.message)
            refused[(pipeline, w, h)] = answer
        else:
            assert (answer.width, answer.height) == (w, h), (where, answer.meta)
            if pipeline != "json":
                out = cv2.imdecode(np.frombuffer(answer.data, np.uint8), cv2.IMREAD_UNCHANGED)
                assert out is not None and out.shape[:2] == (h, w), (where, None if out is None else out.shape)
    # What the encoders take: JPEG 65,500 px per side, WebP 16,383, PNG 1,000,000, any format 1x1.
    assert isinstance(refused.get(("jpeg", 65_501, 1)), ImageTooLarge) and ("jpeg", 65_500, 1) not in refused
    assert isinstance(refused.get(("webp", 1, 16_384)), ImageTooLarge) and ("webp", 1, 16_383) not in refused
    assert isinstance(refused.get(("noop", 1_000_001, 1)), ImageTooLarge) and ("png", 200_000, 1) not in refused
    assert not any(w == h == 1 for _, w, h in refused)
    assert "JPEG holds at most 65,500 px per side" in refused[("jpeg", 65_501, 1)].message
