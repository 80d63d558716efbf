"""invert, brightness/contrast and gamma: per-value tone curves.

Each is a 256-entry lookup table (``lut`` hint), so the planner can fuse a run of them
into one pass over the image, and tables are kept warm in the per-process cache.
"""
from __future__ import annotations

import numpy as np

from .base import Param, register
from .imageutil import lut_apply, lut_bytes

_VALUES = np.arange(256, dtype=np.float64)


def _table(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def cached_table(ctx, name: str, params: dict, make) -> np.ndarray:
    """The table for (name, params), kept warm in the per-process cache."""
    return ctx.warm(("lut", name, tuple(sorted(params.items()))), lambda: make(params), keep=256)


def _invert_lut(params: dict) -> np.ndarray:
    return (255 - _VALUES).astype(np.uint8)


@register("invert", help="negative: every value v becomes 255 - v (alpha kept)", lut=_invert_lut,
          peak_bytes=lut_bytes)
def invert(image, ctx):
    return lut_apply(image, cached_table(ctx, "invert", {}, _invert_lut))


def _brightness_lut(params: dict) -> np.ndarray:
    return _table(params["contrast"] * (_VALUES - 127.5) + 127.5 + params["brightness"])


@register("brightness", help="add brightness and scale contrast around mid-grey", lut=_brightness_lut,
          peak_bytes=lut_bytes,
          noop=lambda p: p["brightness"] == 0 and p["contrast"] == 1, params=[
              Param("brightness", float, 0.0, min=-255, max=255, help="added to every value"),
              Param("contrast", float, 1.0, min=0, max=10, help="factor around 127.5 (1: unchanged)"),
          ])
def brightness(image, ctx, **params):
    return lut_apply(image, cached_table(ctx, "brightness", params, _brightness_lut))


def _gamma_lut(params: dict) -> np.ndarray:
    return _table(255 * (_VALUES / 255) ** (1 / params["gamma"]))


@register("gamma", help="gamma correction: out = 255 * (v/255)^(1/gamma); >1 brightens", lut=_gamma_lut,
          peak_bytes=lut_bytes,
          noop=lambda p: p["gamma"] == 1, params=[
              Param("gamma", float, 1.0, min=0.05, max=10, help="gamma (1: unchanged)"),
          ])
def gamma(image, ctx, **params):
    return lut_apply(image, cached_table(ctx, "gamma", params, _gamma_lut))
