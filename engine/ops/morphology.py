"""erode, dilate, open and close: morphology with a rectangle, ellipse or cross, tile by tile
(a tile's context is as far as the iterations reach, so the result is the whole image's)."""
from __future__ import annotations

import cv2

from .base import Param, register
from .imageutil import map_tiles, tiled_bytes

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
    passes = 2 if morph in (cv2.MORPH_OPEN, cv2.MORPH_CLOSE) else 1  # an erosion and a dilation

    def reach(size: int, iterations: int) -> int:
        return passes * iterations * (size // 2)

    @register(name, help=help, params=_PARAMS, noop=lambda p: p["size"] == 1,
              peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 3 * c, reach=reach(p["size"], p["iterations"])))
    def apply(image, ctx, *, size, shape, iterations):
        element = kernel(ctx, shape, size)
        return map_tiles(image, lambda part: cv2.morphologyEx(part, morph, element, iterations=iterations),
                         reach=reach(size, iterations))


_register("erode", cv2.MORPH_ERODE, "erode: shrink bright regions (local minimum)")
_register("dilate", cv2.MORPH_DILATE, "dilate: grow bright regions (local maximum)")
_register("open", cv2.MORPH_OPEN, "open: erode then dilate; removes small bright specks")
_register("close", cv2.MORPH_CLOSE, "close: dilate then erode; fills small dark holes")
