"""grayscale: drop colour (BT.601 luma, as cv2.cvtColor)."""
import cv2

from .base import register


@register("grayscale", help="convert to single-channel grey (BT.601 luma)", makes_grey=True)
def grayscale(image, ctx):
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)
