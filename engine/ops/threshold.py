"""threshold: binary, Otsu or adaptive, on the grey channel (black and white output)."""
from __future__ import annotations

import cv2

from ..errors import BadParameter
from .base import Param, register
from .imageutil import to_grey


def _check(params: dict) -> None:
    if params["method"] == "adaptive" and params["block"] % 2 == 0:
        raise BadParameter(f"threshold: parameter 'block' must be odd for the adaptive method, got {params['block']}")


@register("threshold", help="black and white: fixed value, Otsu's automatic value, or adaptive (local mean)",
          makes_grey=True, check=_check, params=[
              Param("method", str, "binary", choices=("binary", "otsu", "adaptive"),
                    help="binary: fixed value; otsu: chosen from the histogram; adaptive: local mean"),
              Param("value", int, 127, min=0, max=255, help="fixed threshold for 'binary'"),
              Param("block", int, 11, min=3, max=255, help="odd neighbourhood size in px for 'adaptive'"),
              Param("offset", float, 2.0, min=-255, max=255, help="subtracted from the local mean for 'adaptive'"),
              Param("invert", bool, False, help="white below the threshold instead of above"),
          ])
def threshold(image, ctx, *, method, value, block, offset, invert):
    grey = to_grey(image)
    kind = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
    if method == "adaptive":
        return cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, kind, block, offset)
    if method == "otsu":
        found, out = cv2.threshold(grey, 0, 255, kind | cv2.THRESH_OTSU)
        ctx.meta["threshold"] = float(found)
        return out
    return cv2.threshold(grey, value, 255, kind)[1]
