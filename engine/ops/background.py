"""background: separate the person from the background (MediaPipe selfie segmentation).

The model sees the image resized to its input (256 x 256, or 256 x 144 for images at
least LANDSCAPE_RATIO wider than tall) and gives a person probability per pixel; the
mask is resized back (bilinear) to the image, so large images cost little more than
small ones. Modes:

- ``remove``: the background becomes transparent (soft alpha from the mask); the output
  turns PNG if it would have been JPEG (no alpha there), a later format step still decides;
- ``blur``: the background is blurred (Gaussian, ``blur`` px sigma), the person kept sharp;
- ``colour``: the background is replaced by ``colour``;
- ``mask``: the mask itself, one channel, 255 = person.

``person_fraction`` in the metadata is the share of pixels with probability >= 0.5 and
``person_score`` the mean probability over those pixels (0 when there are none), both
measured on the model's output grid.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import bigblur, litert
from .base import Param, register
from .imageutil import alpha_of, to_bgr
from .transform import parse_colour

LANDSCAPE_RATIO = 1.4  # width / height from which the landscape model is used
PERSON_THRESHOLD = 0.5
# Bytes per pixel at most: the float32 mask at full size and its complement (or its hard
# cut), the BGR copy, the background, the blend and the output with alpha put back.
PEAK_BYTES_PER_PX = 24


def person_mask(image: np.ndarray, ctx) -> np.ndarray:
    """Person probability (float32, 0-1) for every pixel of ``image``; the share of person
    pixels and their mean probability go into the metadata (computed at the model's size)."""
    h, w = image.shape[:2]
    name = "selfie_landscape" if w >= LANDSCAPE_RATIO * h else "selfie_square"
    model = litert.model(ctx, name)
    in_h, in_w = model.input_hw
    small = cv2.resize(to_bgr(image), (in_w, in_h),
                       interpolation=cv2.INTER_AREA if w >= in_w and h >= in_h else cv2.INTER_LINEAR)
    tensor = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32) * (1 / 255.0)
    prob = np.clip(model.run(tensor[None])[0][:, :, 0], 0.0, 1.0)
    person = prob >= PERSON_THRESHOLD
    ctx.meta["segmentation_model"] = name
    ctx.meta["person_fraction"] = round(float(np.count_nonzero(person)) / person.size, 4)
    ctx.meta["person_score"] = round(float(prob[person].mean()) if person.any() else 0.0, 4)
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def _check(params: dict) -> None:
    parse_colour(params["colour"])


@register("background", help="person / background separation (learned): remove to alpha, blur, replace "
                             "with a colour, or return the mask", check=_check, params=[
              Param("mode", str, "blur", choices=("remove", "blur", "colour", "mask"),
                    help="what to do with the background"),
              Param("blur", float, 12.0, min=0.5, max=200.0, help="blur: Gaussian sigma in px of the image"),
              Param("colour", str, "ffffff", format="hex_colour", help="colour: the new background, hex RRGGBB"),
              Param("hard", bool, False, help="cut the mask at 0.5 instead of blending by probability"),
          ], learned=True, peak_bytes=lambda p, w, h, c: w * h * PEAK_BYTES_PER_PX)
def background(image, ctx, *, mode, blur, colour, hard):
    mask = person_mask(image, ctx)
    if hard:
        mask = (mask >= PERSON_THRESHOLD).astype(np.float32)
    if mode in ("mask", "remove"):
        grey_mask = cv2.convertScaleAbs(mask, alpha=255.0)  # rounded, saturated to 0-255
        if mode == "mask":
            return grey_mask
        alpha = alpha_of(image)
        new_alpha = grey_mask if alpha is None else cv2.multiply(grey_mask, alpha, scale=1 / 255.0)
        if ctx.output_format == "jpeg":
            ctx.output_format, ctx.quality = "png", 3
        return cv2.merge([*cv2.split(to_bgr(image)), new_alpha])
    bgr = to_bgr(image)
    if mode == "blur":
        back = bigblur.gaussian(bgr, blur)
    else:
        b, g, r, _ = parse_colour(colour)
        back = np.empty_like(bgr)
        back[...] = (b, g, r)
    out = cv2.blendLinear(bgr, back, mask, 1.0 - mask)
    alpha = alpha_of(image)
    return out if alpha is None else np.dstack([out, alpha])
