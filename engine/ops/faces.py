"""faces: frontal face detection with OpenCV's Haar cascade; boxes drawn and returned.

The boxes go into the reply's metadata as ``faces``: ``[[x, y, width, height], ...]`` in
the pixels of the image as it was at this step (put geometry changes before ``faces``
if the boxes must match the output). OpenCV 5.0 no longer ships the cascades nor
``CascadeClassifier``, so the cascade file is bundled (``data/``) and evaluated by
``haar.py``. Detection runs on a copy shrunk to at most DETECT_MAX_SIDE_PX.
"""
from __future__ import annotations

import cv2

from .base import Param, register
from .haar import Cascade
from .imageutil import to_grey
from .transform import fill_value, parse_colour

DETECT_MAX_SIDE_PX = 640
WINDOW_PX = 24  # the cascade's detection window side
CACHE_KEY = ("haar", "frontalface_default")


def cascade(ctx) -> Cascade:
    """The frontal-face cascade, loaded once per process (about 0.1 s to parse)."""
    return ctx.warm(CACHE_KEY, Cascade.load, keep=1)


def _check(params: dict) -> None:
    parse_colour(params["colour"])


@register("faces", help="detect frontal faces (Haar cascade); draw boxes and return them as 'faces'",
          check=_check, params=[
              Param("scale_factor", float, 1.1, min=1.01, max=2.0, help="size step between detection scales"),
              Param("min_neighbors", int, 3, min=0, max=50, help="overlapping hits needed to keep a face"),
              Param("min_size", int, 30, min=24, max=4096, help="smallest face side in px of the input"),
              Param("draw", bool, True, help="draw the boxes on the image"),
              Param("colour", str, "00ff00", help="box colour, hex RRGGBB"),
              Param("thickness", int, 2, min=1, max=50, help="box line width in px"),
          ])
def faces(image, ctx, *, scale_factor, min_neighbors, min_size, draw, colour, thickness):
    grey = to_grey(image)
    h, w = grey.shape
    shrink = max(1.0, max(h, w) / DETECT_MAX_SIDE_PX)
    if min(h, w) / shrink < WINDOW_PX:  # no detection window fits: no face (e.g. a 1x20000 strip)
        ctx.meta["faces"] = []
        return image
    if shrink > 1:
        grey = cv2.resize(grey, (round(w / shrink), round(h / shrink)), interpolation=cv2.INTER_AREA)
    found = cascade(ctx).detect(grey, scale_factor=scale_factor, min_neighbors=min_neighbors,
                                min_size=max(24, round(min_size / shrink)))
    boxes = [[round(v * shrink) for v in box] for box in found]
    ctx.meta["faces"] = boxes
    if draw and boxes:
        image = image.copy()
        value = fill_value(image, parse_colour(colour))
        for x, y, bw, bh in boxes:
            cv2.rectangle(image, (x, y), (x + bw - 1, y + bh - 1), value, thickness)
    return image
