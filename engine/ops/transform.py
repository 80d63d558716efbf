"""crop, rotate and flip: operations that move pixels without changing their values."""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import BadParameter
from .base import Param, register
from .imageutil import INTERPOLATIONS


def parse_colour(text: str) -> tuple[int, int, int, int]:
    """BGRA from 'RRGGBB' or 'RRGGBBAA' hex (a leading '#' is allowed)."""
    digits = text.lstrip("#")
    if len(digits) not in (6, 8) or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise BadParameter(f"colour must be hex RRGGBB or RRGGBBAA, got {text!r}")
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    a = int(digits[6:8], 16) if len(digits) == 8 else 255
    return b, g, r, a


def fill_value(image: np.ndarray, colour: tuple[int, int, int, int]) -> tuple:
    """The colour as OpenCV wants it for this image's channel count."""
    if image.ndim == 2:
        b, g, r, _ = colour
        return (round(0.114 * b + 0.587 * g + 0.299 * r),)
    return colour[:image.shape[2]]


@register("crop", help="cut out a rectangle (width/height 0: to the right/bottom edge)", geometric=True,
          peak_bytes=lambda p, w, h, c: 0,  # a view of its input
          noop=lambda p: p["x"] == 0 and p["y"] == 0 and p["width"] == 0 and p["height"] == 0, params=[
              Param("x", int, 0, min=0, max=65535, help="left edge in px"),
              Param("y", int, 0, min=0, max=65535, help="top edge in px"),
              Param("width", int, 0, min=0, max=65535, help="width in px (0: to the right edge)"),
              Param("height", int, 0, min=0, max=65535, help="height in px (0: to the bottom edge)"),
          ])
def crop(image, ctx, *, x, y, width, height):
    h, w = image.shape[:2]
    if x >= w or y >= h:
        raise BadParameter(f"crop: the corner ({x}, {y}) is outside the {w}x{h} image")
    right = w if not width else min(w, x + width)
    bottom = h if not height else min(h, y + height)
    return image[y:bottom, x:right]


def _rotate_check(params: dict) -> None:
    parse_colour(params["background"])


_QUARTER_TURNS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def _quarter_turn(angle: float, expand: bool, w: int, h: int) -> bool:
    return angle in _QUARTER_TURNS and (expand or angle == 180 or w == h)


def _rotation(angle: float, expand: bool, w: int, h: int) -> tuple[np.ndarray, int, int]:
    """The affine matrix and the output size of turning a w x h image by ``angle``."""
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, 1.0)
    out_w, out_h = w, h
    if expand:
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        out_w = math.ceil(h * sin + w * cos - 1e-6)
        out_h = math.ceil(h * cos + w * sin - 1e-6)
        matrix[0, 2] += (out_w - w) / 2
        matrix[1, 2] += (out_h - h) / 2
    return matrix, out_w, out_h


def _rotate_bytes(params: dict, w: int, h: int, channels: int) -> int:
    """The output (four channels where a transparent corner needs alpha, then the input made BGRA too)."""
    angle = params["angle"] % 360
    if _quarter_turn(angle, params["expand"], w, h):
        return w * h * channels
    _, out_w, out_h = _rotation(angle, params["expand"], w, h)
    if channels == 3 and parse_colour(params["background"])[3] < 255:
        return (out_w * out_h + w * h) * 4
    return out_w * out_h * channels


@register("rotate", help="rotate counter-clockwise by any angle; quarter turns are exact", geometric=True,
          check=_rotate_check, noop=lambda p: p["angle"] % 360 == 0, peak_bytes=_rotate_bytes, params=[
              Param("angle", float, 90.0, min=-360, max=360, help="degrees counter-clockwise"),
              Param("expand", bool, True, help="grow the canvas to hold the whole rotated image"),
              Param("background", str, "000000", format="hex_colour",
                    help="hex RRGGBB[AA] colour of uncovered corners"),
              Param("interpolation", str, "linear", choices=tuple(INTERPOLATIONS),
                    help="resampling for angles that are not quarter turns"),
          ])
def rotate(image, ctx, *, angle, expand, background, interpolation):
    angle = angle % 360
    h, w = image.shape[:2]
    if _quarter_turn(angle, expand, w, h):
        return cv2.rotate(image, _QUARTER_TURNS[angle])
    matrix, out_w, out_h = _rotation(angle, expand, w, h)
    ctx.check_size("rotate", out_w, out_h)
    colour = parse_colour(background)
    if image.ndim == 3 and image.shape[2] == 3 and colour[3] < 255:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)  # a transparent background needs alpha
    return cv2.warpAffine(image, matrix, (out_w, out_h), flags=INTERPOLATIONS[interpolation],
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill_value(image, colour))


_FLIPS = {"horizontal": 1, "vertical": 0, "both": -1}


@register("flip", help="mirror the image left-right, top-bottom or both", geometric=True,
          peak_bytes=lambda p, w, h, c: w * h * c, params=[
    Param("direction", str, "horizontal", choices=tuple(_FLIPS),
          help="horizontal (left-right), vertical (top-bottom) or both"),
])
def flip(image, ctx, *, direction):
    return cv2.flip(image, _FLIPS[direction])
