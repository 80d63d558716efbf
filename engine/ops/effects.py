"""pixelate and segmentation (k-means colour quantisation in Lab)."""
from __future__ import annotations

import cv2
import numpy as np

from .base import Param, register
from .imageutil import on_bgr

# k-means runs on at most this many pixels; every pixel is then given its nearest centre.
KMEANS_SAMPLE_PX = 65536


@register("pixelate", help="mosaic of block x block squares, each the mean of its pixels",
          noop=lambda p: p["block"] == 1, params=[
              Param("block", int, 10, min=1, max=512, help="square size in px"),
          ])
def pixelate(image, ctx, *, block):
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, -(-w // block)), max(1, -(-h // block))), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (small.shape[1] * block, small.shape[0] * block), interpolation=cv2.INTER_NEAREST)
    return big[:h, :w]


def _kmeans(bgr: np.ndarray, k: int, attempts: int, seed: int, meta: dict) -> np.ndarray:
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    pixels = lab.reshape(-1, 3)
    step = max(1, len(pixels) // KMEANS_SAMPLE_PX)
    sample = pixels[::step].astype(np.float32)
    if len(sample) <= k:  # no more pixels than clusters: each pixel is its own centre
        centres = sample
    else:
        cv2.setRNGSeed(seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, _, centres = cv2.kmeans(sample, k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
    # Nearest centre for every pixel: |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 is the
    # same for every c, so one affine transform gives comparable scores for all centres.
    affine = np.hstack([-2 * centres, np.square(centres).sum(axis=1, keepdims=True)]).astype(np.float32)
    nearest = cv2.transform(lab.astype(np.float32), affine).reshape(len(pixels), -1).argmin(axis=1)
    palette = cv2.cvtColor(np.clip(np.rint(centres), 0, 255).astype(np.uint8).reshape(-1, 1, 3),
                           cv2.COLOR_Lab2BGR).reshape(-1, 3)
    meta["segments"] = [[int(c) for c in colour[::-1]] for colour in palette]  # RGB, for people
    return palette[nearest].reshape(bgr.shape)


@register("segmentation", help="k-means colour segmentation in Lab: every pixel takes its cluster's colour",
          params=[
              Param("k", int, 3, min=2, max=16, help="number of colour clusters"),
              Param("attempts", int, 3, min=1, max=10, help="k-means restarts (best kept)"),
              Param("seed", int, 0, min=0, max=2**31 - 1, help="random seed, for repeatable results"),
          ])
def segmentation(image, ctx, *, k, attempts, seed):
    return on_bgr(image, lambda bgr: _kmeans(bgr, k, attempts, seed, ctx.meta))
