"""text and watermark: blend a line of text or a small image onto a corner or the centre.

The watermark image travels in the pipeline as base64 (PNG keeps its alpha). Decoded
marks are kept in the per-process cache, keyed by a hash of the text.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

import cv2
import numpy as np

from ..errors import BadParameter
from . import codec
from .base import Param, register
from .imageutil import alpha_of, to_bgr, to_grey, with_alpha
from .transform import parse_colour

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
MAX_TEXT_CHARS = 200
MAX_MARK_BYTES = 1024 * 1024
MAX_MARK_PIXELS = 4_000_000
WARM_MARKS = 4  # decoded marks kept per process (each up to MAX_MARK_PIXELS x 4 bytes)
FONT = cv2.FONT_HERSHEY_SIMPLEX

_PLACEMENT = [
    Param("position", str, "bottom-right", choices=POSITIONS, help="where to put it"),
    Param("opacity", float, 0.5, min=0, max=1, help="0: invisible, 1: opaque"),
    Param("margin", int, 10, min=0, max=10000, help="distance from the edges in px"),
]


def place(size: tuple[int, int], box: tuple[int, int], position: str, margin: int) -> tuple[int, int]:
    """Top-left corner of a box (w, h) inside an image (w, h) at ``position``."""
    (w, h), (bw, bh) = size, box
    if position == "centre":
        return (w - bw) // 2, (h - bh) // 2
    x = margin if position.endswith("left") else w - bw - margin
    y = margin if position.startswith("top") else h - bh - margin
    return x, y


def blend(image: np.ndarray, colour: np.ndarray, weight: np.ndarray, x: int, y: int) -> np.ndarray:
    """``image`` with ``colour`` (h x w x c, like image) mixed in at (x, y) by ``weight``
    (h x w floats in 0..1); the parts falling outside the image are cut off."""
    h, w = image.shape[:2]
    ch, cw = weight.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + cw, w), min(y + ch, h)
    if x0 >= x1 or y0 >= y1:
        return image
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    a = weight[y0 - y:y1 - y, x0 - x:x1 - x]
    c = colour[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    if region.ndim == 3:
        a = a[:, :, None]
    out[y0:y1, x0:x1] = np.clip(region * (1 - a) + c * a + 0.5, 0, 255).astype(np.uint8)
    return out


def _same_layout(colour_bgr: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A BGR patch in the layout of ``image`` (grey, BGR, or BGRA with opaque alpha)."""
    if image.ndim == 2:
        return to_grey(colour_bgr)
    if image.shape[2] == 4:
        return with_alpha(colour_bgr, np.full(colour_bgr.shape[:2], 255, np.uint8))
    return colour_bgr


def _text_check(params: dict) -> None:
    parse_colour(params["colour"])
    if not params["text"] or len(params["text"]) > MAX_TEXT_CHARS:
        raise BadParameter(f"text: parameter 'text' must be 1 to {MAX_TEXT_CHARS} characters")


@register("text", help="text watermark (ASCII, Hershey font) blended onto the image", check=_text_check,
          noop=lambda p: p["opacity"] == 0, params=[
              Param("text", str, help="the words to write"),
              Param("height", int, 24, min=4, max=2000, help="letter height in px"),
              Param("colour", str, "ffffff", help="hex RRGGBB"),
              Param("thickness", int, 2, min=1, max=100, help="stroke width in px"),
              *_PLACEMENT,
          ])
def text(image, ctx, *, text, height, colour, thickness, position, opacity, margin):
    scale = height / cv2.getTextSize("Hg", FONT, 1.0, 1)[0][1]
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    h, w = image.shape[:2]
    x, y = place((w, h), (tw + thickness, th + base + thickness), position, margin)
    # Draw only the part of the text box inside the image: a huge text costs no more
    # memory than the image itself.
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + tw + thickness, w), min(y + th + base + thickness, h)
    if x0 >= x1 or y0 >= y1:
        return image
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(mask, text, (x - x0, y - y0 + th), FONT, scale, 255, thickness, cv2.LINE_AA)
    patch = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    patch[:] = parse_colour(colour)[:3]
    return blend(image, _same_layout(patch, image), mask.astype(np.float32) * (opacity / 255), x0, y0)


def _mark_bytes(encoded: str) -> bytes:
    if len(encoded) > MAX_MARK_BYTES * 4 // 3 + 4:
        raise BadParameter(f"watermark: the image is over {MAX_MARK_BYTES} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadParameter("watermark: parameter 'mark' must be base64 of a PNG, JPEG or WebP image") from None
    if codec.sniff(data) is None:
        raise BadParameter("watermark: parameter 'mark' is not a PNG, JPEG, WebP, BMP or TIFF image")
    return data


@register("watermark", help="image watermark (base64 PNG/JPEG/WebP, alpha honoured) blended onto the image",
          check=lambda p: _mark_bytes(p["mark"]), noop=lambda p: p["opacity"] == 0, params=[
              Param("mark", str, help="the watermark image, base64-encoded"),
              Param("width", float, 0.25, min=0.01, max=1, help="watermark width as a fraction of the image width"),
              *_PLACEMENT,
          ])
def watermark(image, ctx, *, mark, width, position, opacity, margin):
    key = ("watermark", hashlib.sha1(mark.encode()).hexdigest())
    limits = codec.Limits(max_pixels=MAX_MARK_PIXELS)
    picture = ctx.warm(key, lambda: codec.decode(_mark_bytes(mark), limits=limits)[0], keep=WARM_MARKS)
    h, w = image.shape[:2]
    mw = max(1, round(w * width))
    mh = max(1, round(picture.shape[0] * mw / picture.shape[1]))
    shrinking = mw < picture.shape[1]
    picture = cv2.resize(picture, (mw, mh), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    alpha = alpha_of(picture)
    weight = np.full((mh, mw), opacity, np.float32)
    if alpha is not None:
        weight *= alpha.astype(np.float32) / 255
    x, y = place((w, h), (mw, mh), position, margin)
    return blend(image, _same_layout(to_bgr(picture), image), weight, x, y)
