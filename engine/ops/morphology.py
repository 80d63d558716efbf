"""erode, dilate, open and close: morphology with a rectangle, ellipse or cross."""
from __future__ import annotations

import cv2

from .base import Param, register

_SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}
_PARAMS = [
    Param("size", int, 3, min=1, max=51, help="structuring element size in px"),
    Param("shape", str, "rect", choices=tuple(_SHAPES), help="structuring element shape"),
    Param("iterations", int, 1, min=1, max=10, help="times to apply"),
]


def kernel(ctx, shape: str, size: int):
    """The structuring element, made once per process."""
    key = ("kernel", shape, size)
    return ctx.warm(key, lambda: cv2.getStructuringElement(_SHAPES[shape], (size, size)))


def _register(name: str, morph: int, help: str) -> None:
    @register(name, help=help, params=_PARAMS, noop=lambda p: p["size"] == 1)
    def apply(image, ctx, *, size, shape, iterations):
        return cv2.morphologyEx(image, morph, kernel(ctx, shape, size), iterations=iterations)


_register("erode", cv2.MORPH_ERODE, "erode: shrink bright regions (local minimum)")
_register("dilate", cv2.MORPH_DILATE, "dilate: grow bright regions (local maximum)")
_register("open", cv2.MORPH_OPEN, "open: erode then dilate; removes small bright specks")
_register("close", cv2.MORPH_CLOSE, "close: dilate then erode; fills small dark holes")
