"""Smoothing and sharpening: gaussian blur, median, bilateral, unsharp mask, denoise."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import BadParameter
from .base import Param, register
from .imageutil import on_colour


def _odd_size(op: str):
    def check(params: dict) -> None:
        if params["size"] % 2 == 0:
            raise BadParameter(f"{op}: parameter 'size' must be odd (3, 5, 7...), got {params['size']}")
    return check


@register("blur", help="gaussian blur", params=[
    Param("sigma", float, 2.0, min=0.1, max=100, help="standard deviation in px"),
])
def blur(image, ctx, *, sigma):
    return cv2.GaussianBlur(image, (0, 0), sigma)


@register("median", help="median blur: removes salt-and-pepper noise, keeps edges",
          check=_odd_size("median"), noop=lambda p: p["size"] == 1, params=[
              Param("size", int, 5, min=1, max=31, help="odd aperture size in px"),
          ])
def median(image, ctx, *, size):
    return cv2.medianBlur(image, size)


@register("bilateral", help="bilateral filter: smooths flat areas, keeps edges", params=[
    Param("diameter", int, 9, min=1, max=25, help="neighbourhood diameter in px"),
    Param("sigma_color", float, 75.0, min=0, max=500, help="how different a value may be and still mix"),
    Param("sigma_space", float, 75.0, min=0, max=500, help="how far a pixel may be and still mix"),
])
def bilateral(image, ctx, *, diameter, sigma_color, sigma_space):
    return on_colour(image, lambda base: cv2.bilateralFilter(base, diameter, sigma_color, sigma_space))


@register("sharpen", help="unsharp mask: adds back amount x (image - blurred)",
          noop=lambda p: p["amount"] == 0, params=[
              Param("amount", float, 1.0, min=0, max=10, help="strength (0: unchanged)"),
              Param("sigma", float, 1.0, min=0.1, max=50, help="blur radius (standard deviation) in px"),
              Param("threshold", int, 0, min=0, max=255, help="leave differences below this alone"),
          ])
def sharpen(image, ctx, *, amount, sigma, threshold):
    def unsharp(base):
        blurred = cv2.GaussianBlur(base, (0, 0), sigma)
        sharp = cv2.addWeighted(base, 1 + amount, blurred, -amount, 0)
        if threshold:
            low = cv2.absdiff(base, blurred) < threshold
            sharp = np.where(low, base, sharp)
        return sharp
    return on_colour(image, unsharp)


@register("denoise", help="non-local means denoising (slow on large images)", params=[
    Param("strength", float, 10.0, min=1, max=50, help="filter strength h: higher removes more noise and detail"),
    Param("template", int, 7, choices=(3, 5, 7, 9), help="patch size in px"),
    Param("search", int, 21, choices=(7, 11, 15, 21, 31), help="search window size in px"),
])
def denoise(image, ctx, *, strength, template, search):
    def nl_means(base):
        if base.ndim == 2:
            return cv2.fastNlMeansDenoising(base, None, strength, template, search)
        return cv2.fastNlMeansDenoisingColored(base, None, strength, strength, template, search)
    return on_colour(image, nl_means)
