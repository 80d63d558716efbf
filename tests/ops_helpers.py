"""Shared helpers for the operation tests: sample images, PSNR and SSIM (numpy only)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine import ops

DATA = Path(__file__).with_name("data")


def sample_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sample(name: str, *, grey: bool = False, max_side: int | None = None) -> np.ndarray:
    """A sample photograph as a numpy image (BGR, or grey), optionally shrunk."""
    image = cv2.imdecode(np.frombuffer(sample_bytes(name), np.uint8),
                         cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if max_side and max(image.shape[:2]) > max_side:
        f = max_side / max(image.shape[:2])
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return image


def png(image: np.ndarray) -> bytes:
    ok, out = cv2.imencode(".png", image)
    assert ok
    return out.tobytes()


def unpng(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def apply(image: np.ndarray, pipeline, **kwargs) -> tuple[np.ndarray, dict]:
    """Run a pipeline on a numpy image through the real runner, losslessly (PNG in and out)."""
    if isinstance(pipeline, str):
        pipeline = pipeline + "|png"
    else:
        pipeline = list(pipeline) + [{"op": "png"}]
    out, meta = ops.run(png(image), pipeline, **kwargs)
    return unpng(out), meta


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for uint8 images (inf when identical)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window (valid positions only), via a summed-area table."""
    s = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float:
    """Mean structural similarity (Wang et al. 2004) with a uniform window, channels averaged."""
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.ndim == 3:
        return float(np.mean([ssim(a[:, :, c], b[:, :, c], window) for c in range(a.shape[2])]))
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box_mean(x, window), _box_mean(y, window)
    vx = _box_mean(x * x, window) - mx * mx
    vy = _box_mean(y * y, window) - my * my
    cxy = _box_mean(x * y, window) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return float(np.mean(num / den))
