"""threshold: binary, Otsu or adaptive, on the grey channel (black and white output)."""
from __future__ import annotations

import cv2

from ..errors import BadParameter
from .base import Param, register
from .imageutil import map_tiles, tile_pixels, to_grey


def _check(params: dict) -> None:
    if params["method"] == "adaptive" and params["block"] % 2 == 0:
        raise BadParameter(f"threshold: parameter 'block' must be odd for the adaptive method, got {params['block']}")


def _threshold_bytes(params: dict, w: int, h: int, channels: int) -> int:
    """The grey copy, the output, and for ``adaptive`` a tile's local means (int32 sums, uint8 mean)."""
    made = (1 if channels == 1 else 2) * w * h
    if params["method"] == "adaptive":
        made += tile_pixels(w, h, params["block"] // 2) * 6
    return made


@register("threshold", help="black and white: fixed value, Otsu's automatic value, or adaptive (local mean)",
          makes_grey=True, check=_check, peak_bytes=_threshold_bytes, params=[
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
    if method == "adaptive":  # tile by tile: the local mean's row sums are a tile wide, not the image
        return map_tiles(grey, lambda part: cv2.adaptiveThreshold(part, 255, cv2.ADAPTIVE_THRESH_MEAN_C, kind, block,
                                                                  offset), reach=block // 2)
    if method == "otsu":
        found, out = cv2.threshold(grey, 0, 255, kind | cv2.THRESH_OTSU)
        ctx.meta["threshold"] = float(found)
        return out
    return cv2.threshold(grey, value, 255, kind)[1]
