"""Smoothing and sharpening: gaussian blur, median, bilateral, unsharp mask, denoise.

Each runs tile by tile (``map_tiles``), with as much context around a tile as its kernel
reaches: the result is the whole-image one, and OpenCV's padded copies and row buffers
are the size of a tile (a 31 px median of a 64000 x 1 strip would pad it to 64000 x 31).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import BadParameter
from .base import Param, register
from .imageutil import map_tiles, tiled, tiled_bytes


def _odd_size(op: str):
    def check(params: dict) -> None:
        if params["size"] % 2 == 0:
            raise BadParameter(f"{op}: parameter 'size' must be odd (3, 5, 7...), got {params['size']}")
    return check


def gaussian_reach(sigma: float) -> int:
    """How far cv2.GaussianBlur looks for a uint8 image: half its kernel, 6 sigma + 1 wide."""
    return math.ceil(3 * sigma) + 1


@register("blur", help="gaussian blur", params=[
    Param("sigma", float, 2.0, min=0.1, max=100, help="standard deviation in px"),
], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 3 * c, reach=gaussian_reach(p["sigma"])))
def blur(image, ctx, *, sigma):
    return map_tiles(image, lambda part: cv2.GaussianBlur(part, (0, 0), sigma), reach=gaussian_reach(sigma))


@register("median", help="median blur: removes salt-and-pepper noise, keeps edges",
          check=_odd_size("median"), noop=lambda p: p["size"] == 1, params=[
              Param("size", int, 5, min=1, max=31, odd=True, help="odd aperture size in px"),
          ], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 3 * c, reach=p["size"] // 2))
def median(image, ctx, *, size):
    return map_tiles(image, lambda part: cv2.medianBlur(part, size), reach=size // 2)


@register("bilateral", help="bilateral filter: smooths flat areas, keeps edges", params=[
    Param("diameter", int, 9, min=1, max=25, help="neighbourhood diameter in px"),
    Param("sigma_color", float, 75.0, min=0, max=500, help="how different a value may be and still mix"),
    Param("sigma_space", float, 75.0, min=0, max=500, help="how far a pixel may be and still mix"),
], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 4 * c, reach=max(1, p["diameter"] // 2)))
def bilateral(image, ctx, *, diameter, sigma_color, sigma_space):
    return tiled(image, lambda base: cv2.bilateralFilter(base, diameter, sigma_color, sigma_space),
                 reach=max(1, diameter // 2))


@register("sharpen", help="unsharp mask: adds back amount x (image - blurred)",
          noop=lambda p: p["amount"] == 0, params=[
              Param("amount", float, 1.0, min=0, max=10, help="strength (0: unchanged)"),
              Param("sigma", float, 1.0, min=0.1, max=50, help="blur radius (standard deviation) in px"),
              Param("threshold", int, 0, min=0, max=255, help="leave differences below this alone"),
          ], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 8 * c, reach=gaussian_reach(p["sigma"])))
def sharpen(image, ctx, *, amount, sigma, threshold):
    def unsharp(base):
        blurred = cv2.GaussianBlur(base, (0, 0), sigma)
        sharp = cv2.addWeighted(base, 1 + amount, blurred, -amount, 0)
        if threshold:
            low = cv2.absdiff(base, blurred) < threshold
            sharp = np.where(low, base, sharp)
        return sharp
    return tiled(image, unsharp, reach=gaussian_reach(sigma))


@register("denoise", help="non-local means denoising (slow on large images)", params=[
    Param("strength", float, 10.0, min=1, max=50, help="filter strength h: higher removes more noise and detail"),
    Param("template", int, 7, choices=(3, 5, 7, 9), help="patch size in px"),
    Param("search", int, 21, choices=(7, 11, 15, 21, 31), help="search window size in px"),
], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 16 * c, reach=p["search"] // 2 + p["template"] // 2))
def denoise(image, ctx, *, strength, template, search):
    def nl_means(base):
        if base.ndim == 2:
            return cv2.fastNlMeansDenoising(base, None, strength, template, search)
        return cv2.fastNlMeansDenoisingColored(base, None, strength, strength, template, search)
    return tiled(image, nl_means, reach=search // 2 + template // 2)
