"""sobel and laplacian: gradient magnitude images on the grey channel.

The float gradients are made tile by tile (``map_tiles``): the step holds the grey
image, its output and one tile's float planes, not three float copies of the image."""
from __future__ import annotations

import cv2

from .base import Param, register
from .imageutil import map_tiles, tile_pixels, to_grey

SOBEL_TILE_BYTES = 13  # per pixel of a tile: two float32 gradients, their magnitude, the uint8 result
LAPLACIAN_TILE_BYTES = 5  # one float32 plane and the uint8 result


def _reach(ksize: int) -> int:
    return max(1, ksize // 2)  # ksize 1 is a 3-tap kernel


def _grey_bytes(width: int, height: int, channels: int, per_tile_pixel: int, ksize: int) -> int:
    """The grey copy (colour input), the output, and a tile's float planes."""
    grey = 0 if channels == 1 else width * height
    return grey + width * height + tile_pixels(width, height, _reach(ksize)) * per_tile_pixel


@register("sobel", help="Sobel gradient magnitude (grey output)", makes_grey=True, params=[
    Param("direction", str, "both", choices=("x", "y", "both"), help="x, y or both (magnitude)"),
    Param("ksize", int, 3, choices=(1, 3, 5, 7), help="kernel size"),
    Param("scale", float, 1.0, min=0.01, max=100, help="factor applied before clipping to 0-255"),
], peak_bytes=lambda p, w, h, c: _grey_bytes(w, h, c, SOBEL_TILE_BYTES, p["ksize"]))
def sobel(image, ctx, *, direction, ksize, scale):
    def gradient(grey):
        if direction == "x":
            return cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=ksize), alpha=scale)
        if direction == "y":
            return cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=ksize), alpha=scale)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=ksize)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=ksize)
        return cv2.convertScaleAbs(cv2.magnitude(gx, gy), alpha=scale)
    return map_tiles(to_grey(image), gradient, reach=_reach(ksize))


@register("laplacian", help="absolute Laplacian (grey output): highlights fine detail", makes_grey=True, params=[
    Param("ksize", int, 3, choices=(1, 3, 5, 7), help="kernel size"),
    Param("scale", float, 1.0, min=0.01, max=100, help="factor applied before clipping to 0-255"),
], peak_bytes=lambda p, w, h, c: _grey_bytes(w, h, c, LAPLACIAN_TILE_BYTES, p["ksize"]))
def laplacian(image, ctx, *, ksize, scale):
    return map_tiles(to_grey(image), lambda grey: cv2.convertScaleAbs(cv2.Laplacian(grey, cv2.CV_32F, ksize=ksize),
                                                                      alpha=scale), reach=_reach(ksize))
