"""equalize and clahe: spread the histogram of the brightness channel.

Colour images are equalised on their brightness only (Y of YCrCb for equalize, L of
Lab for CLAHE), so hues are kept.
"""
from __future__ import annotations

import cv2

from .base import Param, register
from .imageutil import on_colour


def _brightness_bytes(params: dict, w: int, h: int, channels: int) -> int:
    """Colour: a converted copy, its brightness plane, the result converted back, and the
    equaliser's own plane; with alpha also the colour copy and the output put together."""
    if channels == 1:
        return 3 * w * h
    return w * h * (11 if channels == 3 else 18)


def _on_brightness(base, fn, to, back):
    if base.ndim == 2:
        return fn(base)
    planes = cv2.cvtColor(base, to)
    planes[:, :, 0] = fn(planes[:, :, 0])
    return cv2.cvtColor(planes, back)


@register("equalize", help="histogram equalisation of the brightness channel", peak_bytes=_brightness_bytes)
def equalize(image, ctx):
    return on_colour(image, lambda base: _on_brightness(base, cv2.equalizeHist,
                                                        cv2.COLOR_BGR2YCrCb, cv2.COLOR_YCrCb2BGR))


@register("clahe", help="contrast-limited adaptive histogram equalisation of the lightness channel",
          peak_bytes=_brightness_bytes, params=[
    Param("clip", float, 2.0, min=0.1, max=40, help="contrast limit"),
    Param("tiles", int, 8, min=1, max=64, help="grid of tiles per side"),
])
def clahe(image, ctx, *, clip, tiles):
    key = ("clahe", clip, tiles)
    equaliser = ctx.warm(key, lambda: cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)), keep=8)
    return on_colour(image, lambda base: _on_brightness(base, equaliser.apply,
                                                        cv2.COLOR_BGR2Lab, cv2.COLOR_Lab2BGR))
