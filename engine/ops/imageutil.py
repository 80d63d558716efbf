"""Small helpers shared by operations: channel layout, alpha, kernel sizes."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def to_grey(image: np.ndarray) -> np.ndarray:
    """Single-channel luma (BT.601), whatever the input layout."""
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Three-channel BGR (alpha dropped, grey replicated)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image[:, :, :3] if image.shape[2] == 4 else image


def alpha_of(image: np.ndarray) -> np.ndarray | None:
    return image[:, :, 3] if image.ndim == 3 and image.shape[2] == 4 else None


def with_alpha(image: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``image`` with ``alpha`` put back as a fourth channel (if there was one)."""
    if alpha is None:
        return image
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.dstack((image, alpha))


def on_colour(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn`` to the colour (or grey) channels and keep any alpha as it was."""
    alpha = alpha_of(image)
    base = image[:, :, :3] if alpha is not None else image
    return with_alpha(fn(np.ascontiguousarray(base)), alpha)


def on_bgr(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a colour-only ``fn`` to BGR (grey input is made BGR first); keep alpha."""
    return with_alpha(fn(to_bgr(image)), alpha_of(image))


def odd(n: int) -> int:
    """The nearest odd number at or above ``n`` (OpenCV kernel sizes)."""
    return n if n % 2 else n + 1


def lut_apply(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A 256-entry table applied to colour/grey channels (alpha untouched)."""
    return on_colour(image, lambda base: cv2.LUT(base, table))
