"""text and watermark: blend a line of text or a small image onto a corner or the centre.

The watermark image travels in the pipeline as base64 (PNG keeps its alpha). Decoded
marks are kept in the per-process cache, keyed by a hash of the text.

Only what shows is made: the text's mask and the resized mark are cut to the part inside
the image (a mark as wide as a 12000 x 1 image is 12000 px tall, of which one row shows),
and the blend runs tile by tile, so the memory is the output's plus a tile's floats.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib

import cv2
import numpy as np

from ..errors import BadParameter
from . import codec
from .base import Param, register
from .imageutil import alpha_of, tiles, to_bgr, to_grey, with_alpha
from .transform import parse_colour

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
MAX_TEXT_CHARS = 200
MAX_MARK_BYTES = 1024 * 1024
MAX_MARK_PIXELS = 4_000_000
WARM_MARKS = 4  # decoded marks kept per process (each up to MAX_MARK_PIXELS x 4 bytes)
MARK_LIMITS = codec.Limits(max_pixels=MAX_MARK_PIXELS)
BLEND_TILE_SIDE_PX = 256
# Per pixel of a blend tile: float32 region, colour and four temporaries per channel, and the
# weight's float planes and the colour's conversions.
BLEND_TILE_BYTES_PER_CHANNEL = 32
BLEND_TILE_BYTES = 24
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


def blend(image: np.ndarray, colour, alpha: np.ndarray | None, opacity: float, x: int, y: int) -> np.ndarray:
    """A copy of ``image`` with ``colour`` mixed in at (x, y) by ``alpha`` (uint8, 255: all
    of it; None: every pixel) times ``opacity``. ``colour`` is a BGR value (``alpha`` then
    gives the box) or a patch of any layout (its own alpha is not used: pass it as ``alpha``).
    The parts falling outside the image are cut off. Mixed in float32 tile by tile: it holds
    the output and one tile's floats (``blend_bytes``)."""
    h, w = image.shape[:2]
    bh, bw = (alpha if alpha is not None else colour).shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
    if x0 >= x1 or y0 >= y1:
        return image
    out = image.copy()
    value = None
    if not isinstance(colour, np.ndarray):
        value = _same_layout(np.uint8(colour[:3]).reshape(1, 1, 3), image).astype(np.float32)
    for ty0, ty1, tx0, tx1 in tiles(y1 - y0, x1 - x0, side=BLEND_TILE_SIDE_PX):
        region = out[y0 + ty0:y0 + ty1, x0 + tx0:x0 + tx1]
        box = np.s_[y0 - y + ty0:y0 - y + ty1, x0 - x + tx0:x0 - x + tx1]  # the same pixels in colour and alpha
        a: np.ndarray = np.asarray(np.float32(opacity)) if alpha is None \
            else alpha[box].astype(np.float32) / 255 * np.float32(opacity)
        c = value if value is not None else _same_layout(to_bgr(colour[box]), image).astype(np.float32)
        if region.ndim == 3 and np.ndim(a) == 2:
            a = a[:, :, None]
        region[...] = np.clip(region.astype(np.float32) * (1 - a) + c * a + 0.5, 0, 255).astype(np.uint8)
    return out


def blend_bytes(width: int, height: int, channels: int, box_px: int) -> int:
    """Peak bytes of ``blend`` on a width x height image, for a box of ``box_px`` pixels shown."""
    if not box_px:
        return 0
    per_tile_pixel = BLEND_TILE_BYTES_PER_CHANNEL * channels + BLEND_TILE_BYTES
    return width * height * channels + min(box_px, BLEND_TILE_SIDE_PX ** 2) * per_tile_pixel


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


@functools.lru_cache(maxsize=64)  # the step's peak_bytes asks first: getTextSize of a large text takes 0.3 s
def _text_box(text: str, height: int, thickness: int, position: str, margin: int, w: int, h: int):
    """The font scale, the text's height above its baseline, the box's corner and the part
    of the box inside a w x h image (x0, y0, x1, y1)."""
    scale = height / cv2.getTextSize("Hg", FONT, 1.0, 1)[0][1]
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = place((w, h), (tw + thickness, th + base + thickness), position, margin)
    shown = max(x, 0), max(y, 0), min(x + tw + thickness, w), min(y + th + base + thickness, h)
    return scale, th, (x, y), shown


def _text_bytes(params: dict, width: int, height: int, channels: int) -> int:
    *_, (x0, y0, x1, y1) = _text_box(params["text"], params["height"], params["thickness"], params["position"],
                                     params["margin"], width, height)
    shown = max(0, x1 - x0) * max(0, y1 - y0)
    return shown + blend_bytes(width, height, channels, shown)


@register("text", help="text watermark (ASCII, Hershey font) blended onto the image", check=_text_check,
          noop=lambda p: p["opacity"] == 0, peak_bytes=_text_bytes, params=[
              Param("text", str, nonempty=True, max_length=MAX_TEXT_CHARS, help="the words to write"),
              Param("height", int, 24, min=4, max=2000, help="letter height in px"),
              Param("colour", str, "ffffff", format="hex_colour", help="hex RRGGBB"),
              Param("thickness", int, 2, min=1, max=100, help="stroke width in px"),
              *_PLACEMENT,
          ])
def text(image, ctx, *, text, height, colour, thickness, position, opacity, margin):
    h, w = image.shape[:2]
    scale, th, (x, y), (x0, y0, x1, y1) = _text_box(text, height, thickness, position, margin, w, h)
    if x0 >= x1 or y0 >= y1:
        return image
    # Draw only the part of the text box inside the image: a huge text costs no more
    # memory than the image itself.
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(mask, text, (x - x0, y - y0 + th), FONT, scale, 255, thickness, cv2.LINE_AA)
    return blend(image, parse_colour(colour), mask, opacity, x0, y0)


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


def _mark_header(mark: str):
    """The mark's header (size, decoded bytes), read without decoding it."""
    return codec.probe(_mark_bytes(mark), MARK_LIMITS)


def _mark_box(w: int, h: int, mark_w: int, mark_h: int, width: float, position: str, margin: int):
    """The mark's size on a w x h image, its corner and the part inside the image (x0, y0, x1, y1)."""
    mw = max(1, round(w * width))
    mh = max(1, round(mark_h * mw / mark_w))
    x, y = place((w, h), (mw, mh), position, margin)
    return (mw, mh), (x, y), (max(x, 0), max(y, 0), min(x + mw, w), min(y + mh, h))


def _resized_part(picture: np.ndarray, size: tuple[int, int], part: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels ``part`` (x0, y0, x1, y1) of ``picture`` resized to ``size``. Shrinking (the
    result is no larger than the mark) or when all of it shows, the whole is resized; else
    only the part is made, by the mapping cv2.resize uses (cubic, edges replicated)."""
    (mw, mh), (x0, y0, x1, y1) = size, part
    ph, pw = picture.shape[:2]
    if mw < pw or (x1 - x0) * (y1 - y0) == mw * mh:
        interpolation = cv2.INTER_AREA if mw < pw else cv2.INTER_CUBIC
        return cv2.resize(picture, (mw, mh), interpolation=interpolation)[y0:y1, x0:x1]
    fx, fy = mw / pw, mh / ph
    matrix = np.array([[fx, 0, (fx - 1) / 2 - x0], [0, fy, (fy - 1) / 2 - y0]])
    return cv2.warpAffine(picture, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _watermark_bytes(params: dict, width: int, height: int, channels: int) -> int:
    """The mark decoded (unless cached), the part of it shown, and the blend."""
    header = _mark_header(params["mark"])
    mark_w, mark_h = header.display_size
    (mw, mh), _, (x0, y0, x1, y1) = _mark_box(width, height, mark_w, mark_h, params["width"], params["position"],
                                              params["margin"])
    shown = max(0, x1 - x0) * max(0, y1 - y0)
    resized = mw * mh if mw < mark_w else shown
    return header.peak_bytes() + resized * 4 + blend_bytes(width, height, channels, shown)


@register("watermark", help="image watermark (base64 PNG/JPEG/WebP, alpha honoured) blended onto the image",
          check=lambda p: _mark_bytes(p["mark"]), noop=lambda p: p["opacity"] == 0, peak_bytes=_watermark_bytes,
          params=[
              Param("mark", str, help="the watermark image, base64-encoded"),
              Param("width", float, 0.25, min=0.01, max=1, help="watermark width as a fraction of the image width"),
              *_PLACEMENT,
          ])
def watermark(image, ctx, *, mark, width, position, opacity, margin):
    key = ("watermark", hashlib.sha1(mark.encode()).hexdigest())
    picture = ctx.warm(key, lambda: codec.decode(_mark_bytes(mark), limits=MARK_LIMITS)[0], keep=WARM_MARKS)
    h, w = image.shape[:2]
    size, (x, y), (x0, y0, x1, y1) = _mark_box(w, h, picture.shape[1], picture.shape[0], width, position, margin)
    if x0 >= x1 or y0 >= y1:
        return image
    shown = _resized_part(picture, size, (x0 - x, y0 - y, x1 - x, y1 - y))
    return blend(image, shown, alpha_of(shown), opacity, x0, y0)
