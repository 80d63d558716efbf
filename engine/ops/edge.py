"""edge: Canny edge detection on the grey image (the older design's `edge` task)."""
import cv2

from .base import Param, register
from .imageutil import to_grey


# Canny holds the grey image, its output and about four bytes a pixel of gradients and edge map.
@register("edge", help="Canny edge detection: white edges on black", makes_grey=True,
          peak_bytes=lambda p, w, h, c: w * h * (5 if c == 1 else 6), params=[
    Param("low", float, 100.0, min=0, max=10000, help="lower hysteresis threshold"),
    Param("high", float, 200.0, min=0, max=10000, help="upper hysteresis threshold"),
    Param("aperture", int, 3, choices=(3, 5, 7), help="Sobel aperture size"),
    Param("l2", bool, False, help="use the exact L2 gradient norm"),
])
def edge(image, ctx, *, low, high, aperture, l2):
    return cv2.Canny(to_grey(image), low, high, apertureSize=aperture, L2gradient=l2)
