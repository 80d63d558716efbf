"""edge: Canny edge detection on the grey image (the older design's `edge` task)."""
import cv2

from .base import Param, register


@register("edge", help="Canny edge detection: white edges on black", makes_grey=True, params=[
    Param("low", float, 100.0, min=0, max=10000, help="lower hysteresis threshold"),
    Param("high", float, 200.0, min=0, max=10000, help="upper hysteresis threshold"),
    Param("aperture", int, 3, choices=(3, 5, 7), help="Sobel aperture size"),
    Param("l2", bool, False, help="use the exact L2 gradient norm"),
])
def edge(image, ctx, *, low, high, aperture, l2):
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return cv2.Canny(image, low, high, apertureSize=aperture, L2gradient=l2)
