"""grayscale: drop colour (BT.601 luma, as cv2.cvtColor)."""
from .base import register
from .imageutil import to_grey


@register("grayscale", help="convert to single-channel grey (BT.601 luma)", makes_grey=True,
          peak_bytes=lambda p, w, h, c: 0 if c == 1 else w * h)
def grayscale(image, ctx):
    return to_grey(image)
