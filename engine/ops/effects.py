"""pixelate and segmentation (k-means colour quantisation in Lab)."""
from __future__ import annotations

import cv2
import numpy as np

from .base import Param, register
from .imageutil import tiled, tiled_bytes, to_bgr

# k-means runs on at most this many pixels; every pixel is then given its nearest centre.
KMEANS_SAMPLE_PX = 65536
SAMPLE_BYTES_PER_PX = 64  # the sample's indices (3 x int64), pixels, Lab and float copies, k-means' own
KMEANS_TILE_SIDE_PX = 256  # nearest centres tile by tile: a tile's k float scores per pixel stay small


def _pixelate_bytes(params: dict, width: int, height: int, channels: int) -> int:
    block = params["block"]
    return (width * height + -(-width // block) * -(-height // block)) * channels


@register("pixelate", help="mosaic of block x block squares, each the mean of its pixels",
          noop=lambda p: p["block"] == 1, peak_bytes=_pixelate_bytes, params=[
              Param("block", int, 10, min=1, max=512, help="square size in px"),
          ])
def pixelate(image, ctx, *, block):
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, -(-w // block)), max(1, -(-h // block))), interpolation=cv2.INTER_AREA)
    # Each output pixel picks its block's mean: only the output is made (a resize to whole
    # blocks then a crop would make 512 x 64000 of a 1 x 64000 strip).
    return small[(np.arange(h) // block)[:, None], np.arange(w) // block]


def _kmeans(image: np.ndarray, k: int, attempts: int, seed: int, meta: dict) -> np.ndarray:
    h, w = image.shape[:2]
    step = max(1, h * w // KMEANS_SAMPLE_PX)
    at = np.arange(0, h * w, step)  # every step-th pixel in reading order
    picked = to_bgr(image[at // w, at % w][None])
    sample = cv2.cvtColor(picked, cv2.COLOR_BGR2Lab).reshape(-1, 3).astype(np.float32)
    if len(sample) <= k:  # no more pixels than clusters: each pixel is its own centre
        centres: np.ndarray = sample
    else:
        cv2.setRNGSeed(seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, _, centres = cv2.kmeans(sample, k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
    # Nearest centre for every pixel: |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 is the
    # same for every c, so one affine transform gives comparable scores for all centres.
    affine = np.hstack([-2 * centres, np.square(centres).sum(axis=1, keepdims=True)]).astype(np.float32)
    palette = cv2.cvtColor(np.clip(np.rint(centres), 0, 255).astype(np.uint8).reshape(-1, 1, 3),
                           cv2.COLOR_Lab2BGR).reshape(-1, 3)
    meta["segments"] = [[int(c) for c in colour[::-1]] for colour in palette]  # RGB, for people

    def paint(bgr: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).astype(np.float32)
        scores = cv2.transform(lab, affine).reshape(*bgr.shape[:2], -1)  # one centre: one plane, 2-D
        return palette[scores.argmin(axis=2)]

    return tiled(image, paint, bgr=True, side=KMEANS_TILE_SIDE_PX)


def _segmentation_bytes(params: dict, width: int, height: int, channels: int) -> int:
    """The output, a tile's Lab and k float scores (and their argmin), and the sample."""
    per_tile_pixel = 29 + 4 * params["k"]
    sample = min(width * height, 2 * KMEANS_SAMPLE_PX) * SAMPLE_BYTES_PER_PX
    return tiled_bytes(width, height, channels, per_tile_pixel, bgr=True, side=KMEANS_TILE_SIDE_PX) + sample


@register("segmentation", help="k-means colour segmentation in Lab: every pixel takes its cluster's colour",
          peak_bytes=_segmentation_bytes, params=[
              Param("k", int, 3, min=2, max=16, help="number of colour clusters"),
              Param("attempts", int, 3, min=1, max=10, help="k-means restarts (best kept)"),
              Param("seed", int, 0, min=0, max=2**31 - 1, help="random seed, for repeatable results"),
          ])
def segmentation(image, ctx, *, k, attempts, seed):
    return _kmeans(image, k, attempts, seed, ctx.meta)
