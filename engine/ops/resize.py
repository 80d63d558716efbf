"""resize and thumbnail: change the size, keeping the aspect ratio unless told not to.

Modes (as thumbor and imgproxy name them):

- ``fit``: as large as possible inside width x height, aspect kept;
- ``fill``: cover width x height, aspect kept, then crop the overflow from the centre;
- ``exact``: exactly width x height, stretched if need be.

A zero width or height means "follow the aspect ratio".
"""
from __future__ import annotations

import cv2

from ..errors import BadParameter
from .base import Param, register
from .imageutil import INTERPOLATIONS

MAX_SIDE_PX = 16384


def _check(params: dict) -> None:
    if not params["width"] and not params["height"]:
        raise BadParameter("resize: give width, height or both (0 means 'follow the aspect ratio')")


def target_size(params: dict, width: int, height: int) -> tuple[int, int, int, int]:
    """(scaled width, scaled height, final width, final height) for an input size.

    The scaled size is what the image is resized to; the final size is after the crop
    that ``fill`` does (for other modes they are equal).
    """
    tw, th, mode = params["width"], params["height"], params["mode"]
    if not tw:
        tw = max(1, round(width * th / height))
    if not th:
        th = max(1, round(height * tw / width))
    if mode == "exact":
        sw, sh = tw, th
    else:
        pick = min if mode == "fit" else max
        scale = pick(tw / width, th / height)
        if not params["upscale"]:
            scale = min(scale, 1.0)
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
    if not params["upscale"] and mode == "exact":
        sw, sh = min(sw, width), min(sh, height)
    if mode == "fill":
        return sw, sh, min(sw, tw), min(sh, th)
    return sw, sh, sw, sh


def _scaled_size(params: dict, width: int, height: int) -> tuple[int, int]:
    """The size the image is resized to (before any crop): the planner's ``shrink`` hint."""
    return target_size(params, width, height)[:2]


def _resize_bytes(params: dict, width: int, height: int, channels: int) -> int:
    sw, sh = _scaled_size(params, width, height)
    return sw * sh * channels  # the crop of ``fill`` is a view of it


def scale_image(image, ctx, op: str, sw: int, sh: int, fw: int, fh: int, interpolation: str):
    """Resize to sw x sh and centre-crop to fw x fh; the one resizing path for both ops."""
    h, w = image.shape[:2]
    ctx.check_size(op, sw, sh)
    if (sw, sh) != (w, h):
        if interpolation == "auto":
            interpolation = "area" if sw * sh < w * h else "cubic"
        image = cv2.resize(image, (sw, sh), interpolation=INTERPOLATIONS[interpolation])
    if (fw, fh) != (sw, sh):
        x, y = (sw - fw) // 2, (sh - fh) // 2
        image = image[y:y + fh, x:x + fw]
    return image


@register("resize", help="resize: fit inside, fill and crop, or stretch to width x height",
          geometric=True, shrink=_scaled_size, check=_check, peak_bytes=_resize_bytes,
          any_of=("width", "height"), any_of_help="0 means 'follow the aspect ratio'", params=[
              Param("width", int, 0, min=0, max=MAX_SIDE_PX, help="target width in px (0: follow aspect)"),
              Param("height", int, 0, min=0, max=MAX_SIDE_PX, help="target height in px (0: follow aspect)"),
              Param("mode", str, "fit", choices=("fit", "fill", "exact"),
                    help="fit inside, fill and centre-crop, or stretch exactly"),
              Param("interpolation", str, "auto", choices=("auto", *INTERPOLATIONS),
                    help="auto: area when shrinking, cubic when enlarging"),
              Param("upscale", bool, True, help="allow making the image larger"),
          ])
def resize(image, ctx, *, width, height, mode, interpolation, upscale):
    params = {"width": width, "height": height, "mode": mode, "upscale": upscale}
    h, w = image.shape[:2]
    return scale_image(image, ctx, "resize", *target_size(params, w, h), interpolation)


def _thumb_params(size: int, square: bool) -> dict:
    return {"width": size, "height": size, "mode": "fill" if square else "fit", "upscale": False}


def _thumb_size(params: dict, width: int, height: int) -> tuple[int, int]:
    return _scaled_size(_thumb_params(params["size"], params["square"]), width, height)


@register("thumbnail", help="shrink to fit a size x size box (never enlarges); square crops to fill it",
          geometric=True, shrink=_thumb_size, peak_bytes=lambda p, w, h, c: _resize_bytes(
              _thumb_params(p["size"], p["square"]), w, h, c), params=[
              Param("size", int, 256, min=1, max=4096, help="longest side of the box in px"),
              Param("square", bool, False, help="fill the square box, cropping the overflow"),
          ])
def thumbnail(image, ctx, *, size, square):
    h, w = image.shape[:2]
    return scale_image(image, ctx, "thumbnail", *target_size(_thumb_params(size, square), w, h), "area")
