"""anonymize: blur, pixelate or fill every detected face (the edge privacy case).

Faces are found by the learned detector (``faces.detect_faces``, same parameters and
the same ``faces`` metadata, but ``tiles=2`` by default: privacy favours finding small
faces over a few more inferences and false hits); each box grows by ``margin`` (a fraction of its size on
every side, clipped to the image) and that rectangle is hidden. Pixels outside the
rectangles are untouched; an alpha channel is kept. ``anonymized`` in the metadata
counts the rectangles hidden.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import bigblur
from .base import Param, register
from .faces import detect_faces, detection_bytes, detection_params
from .transform import fill_value, parse_colour

BLUR_SIGMA_PER_SIDE = 1 / 6  # Gaussian sigma as a fraction of the hidden rectangle's longer side


def _check(params: dict) -> None:
    parse_colour(params["colour"])


def _hide(region: np.ndarray, method: str, blocks: int, colour: tuple) -> np.ndarray:
    h, w = region.shape[:2]
    if method == "blur":
        return bigblur.gaussian(region, max(1.0, max(h, w) * BLUR_SIGMA_PER_SIDE))
    if method == "pixelate":
        cells = max(1, min(blocks, w, h))
        block = max(w, h) / cells
        small = cv2.resize(region, (max(1, round(w / block)), max(1, round(h / block))),
                           interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    out = np.empty_like(region)
    out[...] = fill_value(region, colour)
    return out


@register("anonymize", help="hide every detected face (learned detector): blur, pixelate or fill, with a margin",
          check=_check, params=detection_params(tiles=2) + [
              Param("method", str, "blur", choices=("blur", "pixelate", "fill"), help="how a face is hidden"),
              Param("margin", float, 0.25, min=0.0, max=2.0,
                    help="grow each face box by this fraction of its size on every side"),
              Param("blocks", int, 8, min=2, max=64, help="pixelate: blocks across a face's longer side"),
              Param("colour", str, "000000", format="hex_colour", help="fill: colour, hex RRGGBB"),
          ], learned=True, peak_bytes=lambda p, w, h, c: detection_bytes(w, h, c) + w * h * (c + 6))
def anonymize(image, ctx, *, model, min_score, max_faces, tiles, method, margin, blocks, colour):
    found = detect_faces(image, ctx, model=model, min_score=min_score, max_faces=max_faces, tiles=tiles)
    ctx.meta["anonymized"] = len(found)
    if not found:
        return image
    h, w = image.shape[:2]
    bgra = parse_colour(colour)
    out = image.copy()
    base = out if out.ndim == 2 else out[:, :, :3]  # alpha kept as it was
    for face in found:  # one after the other: where rectangles overlap, the later one hides the hidden
        x, y, bw, bh = face["box"]
        dx, dy = round(bw * margin), round(bh * margin)
        x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(w, x + bw + dx), min(h, y + bh + dy)
        base[y0:y1, x0:x1] = _hide(np.ascontiguousarray(base[y0:y1, x0:x1]), method, blocks, bgra)
    return out
