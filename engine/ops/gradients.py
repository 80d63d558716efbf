"""sobel and laplacian: gradient magnitude images on the grey channel."""
from __future__ import annotations

import cv2

from .base import Param, register
from .imageutil import to_grey


@register("sobel", help="Sobel gradient magnitude (grey output)", makes_grey=True, params=[
    Param("direction", str, "both", choices=("x", "y", "both"), help="x, y or both (magnitude)"),
    Param("ksize", int, 3, choices=(1, 3, 5, 7), help="kernel size"),
    Param("scale", float, 1.0, min=0.01, max=100, help="factor applied before clipping to 0-255"),
])
def sobel(image, ctx, *, direction, ksize, scale):
    grey = to_grey(image)
    if direction == "x":
        return cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=ksize), alpha=scale)
    if direction == "y":
        return cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=ksize), alpha=scale)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=ksize)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=ksize)
    return cv2.convertScaleAbs(cv2.magnitude(gx, gy), alpha=scale)


@register("laplacian", help="absolute Laplacian (grey output): highlights fine detail", makes_grey=True, params=[
    Param("ksize", int, 3, choices=(1, 3, 5, 7), help="kernel size"),
    Param("scale", float, 1.0, min=0.01, max=100, help="factor applied before clipping to 0-255"),
])
def laplacian(image, ctx, *, ksize, scale):
    return cv2.convertScaleAbs(cv2.Laplacian(to_grey(image), cv2.CV_32F, ksize=ksize), alpha=scale)
