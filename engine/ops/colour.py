"""sepia and hsv: colour toning (grey input is made colour first; alpha kept), tile by tile."""
from __future__ import annotations

import cv2
import numpy as np

from .base import Param, register
from .imageutil import tiled, tiled_bytes

# The classic sepia matrix, rows and columns in OpenCV's B, G, R order.
SEPIA_BGR = np.array([[0.131, 0.534, 0.272],
                      [0.168, 0.686, 0.349],
                      [0.189, 0.769, 0.393]], dtype=np.float32)


@register("sepia", help="sepia toning (the classic matrix), mixed with the original by strength",
          noop=lambda p: p["strength"] == 0, params=[
              Param("strength", float, 1.0, min=0, max=1, help="0: unchanged, 1: full sepia"),
          ], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 6, bgr=True))
def sepia(image, ctx, *, strength):
    matrix = (1 - strength) * np.eye(3, dtype=np.float32) + strength * SEPIA_BGR
    return tiled(image, lambda bgr: cv2.transform(bgr, matrix), bgr=True)


def _hsv_tables(hue: float, saturation: float, value: float) -> tuple[np.ndarray, ...]:
    v = np.arange(256, dtype=np.float64)
    h_table = np.mod(np.rint(v + hue * 256 / 360), 256).astype(np.uint8)
    s_table = np.clip(np.rint(v * saturation), 0, 255).astype(np.uint8)
    v_table = np.clip(np.rint(v * value), 0, 255).astype(np.uint8)
    return h_table, s_table, v_table


@register("hsv", help="shift hue and scale saturation and value (brightness)",
          noop=lambda p: p["hue"] % 360 == 0 and p["saturation"] == 1 and p["value"] == 1, params=[
              Param("hue", float, 0.0, min=-360, max=360, help="hue rotation in degrees"),
              Param("saturation", float, 1.0, min=0, max=10, help="saturation factor (0: grey, 1: unchanged)"),
              Param("value", float, 1.0, min=0, max=10, help="value (brightness) factor"),
          ], peak_bytes=lambda p, w, h, c: tiled_bytes(w, h, c, 18, bgr=True))
def hsv(image, ctx, *, hue, saturation, value):
    key = ("hsv", hue, saturation, value)
    tables = ctx.warm(key, lambda: _hsv_tables(hue, saturation, value))

    def adjust(bgr):
        planes = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV_FULL))
        planes = [cv2.LUT(p, t) for p, t in zip(planes, tables)]
        return cv2.cvtColor(cv2.merge(planes), cv2.COLOR_HSV2BGR_FULL)
    return tiled(image, adjust, bgr=True)
