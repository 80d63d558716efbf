"""Small helpers shared by operations: channel layout, alpha, kernel sizes, tiles.

``map_tiles`` and ``tiled`` run a function tile by tile into one output, each tile with
enough of the image around it for a filter that reaches ``reach`` px: the result is
what one call on the whole image gives, but the intermediates (float planes, colour
conversions, OpenCV's padded copies and row buffers) are the size of a tile whatever
the image's size or shape.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

TILE_SIDE_PX = 512  # a tile's side (a pointwise function takes strips of as many pixels on thin images)

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


def lut_apply(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A 256-entry table applied to colour/grey channels (alpha untouched)."""
    return tiled(image, lambda base: cv2.LUT(base, table))


def lut_bytes(params: dict, width: int, height: int, channels: int) -> int:
    """peak_bytes of ``lut_apply``: the output and a tile's copy and table output."""
    return tiled_bytes(width, height, channels, 6)


def _tile_shape(h: int, w: int, side: int, reach: int) -> tuple[int, int]:
    if reach:  # square tiles: a vertical filter's row buffers are as wide as its tile
        return min(h, side), min(w, side)
    rows = min(h, side)
    cols = min(w, max(side, side * side // rows))
    return min(h, max(side, side * side // cols)), cols


def tile_side(reach: int = 0, side: int | None = None) -> int:
    """A tile's side: ``side`` (default TILE_SIDE_PX), at least four times the context."""
    return max(side or TILE_SIDE_PX, 4 * reach)


def tile_pixels(width: int, height: int, reach: int = 0, side: int | None = None) -> int:
    """The most pixels one tile covers, its context included (for peak_bytes hints)."""
    side = tile_side(reach, side)
    return min(width * height, (side + 2 * reach) ** 2)


def tiles(height: int, width: int, *, reach: int = 0, side: int | None = None):
    """(y0, y1, x0, x1) of each tile covering a height x width image, in reading order."""
    side = tile_side(reach, side)
    rows, cols = _tile_shape(height, width, side, reach)
    for y0 in range(0, height, rows):
        for x0 in range(0, width, cols):
            yield y0, min(height, y0 + rows), x0, min(width, x0 + cols)


def map_tiles(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], *, reach: int = 0,
              side: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``fn`` over tiles of ``image``, each given ``reach`` px of context that is cut off
    again, written into one output (``out``, or made from the first tile's result): the
    same as ``fn(image)`` where an output pixel depends on input pixels at most ``reach``
    px away (OpenCV's borders fall on the image's edges, as they would)."""
    h, w = image.shape[:2]
    for y0, y1, x0, x1 in tiles(h, w, reach=reach, side=side):
        ya, xa = max(0, y0 - reach), max(0, x0 - reach)
        part = fn(image[ya:min(h, y1 + reach), xa:min(w, x1 + reach)])[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
        if out is None:
            out = np.empty((h, w) + part.shape[2:], part.dtype)
        out[y0:y1, x0:x1] = part
    assert out is not None, "an image has at least one tile"
    return out


def tiled(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], *, reach: int = 0, bgr: bool = False,
          side: int | None = None) -> np.ndarray:
    """``fn`` on the colour (or grey) channels, alpha kept, tile by tile (``map_tiles``);
    with ``bgr``, grey input is made BGR first. It holds the output and one tile's
    intermediates. ``fn`` returns uint8 (three channels where there is alpha)."""
    alpha = alpha_of(image)
    if alpha is None:
        return map_tiles(image, (lambda part: fn(to_bgr(part))) if bgr else fn, reach=reach, side=side)
    out = np.empty(image.shape, np.uint8)
    out[:, :, 3] = alpha
    map_tiles(image[:, :, :3], fn, reach=reach, side=side, out=out[:, :, :3])
    return out


def tiled_bytes(width: int, height: int, channels: int, per_tile_pixel: int, *, reach: int = 0,
                bgr: bool = False, side: int | None = None) -> int:
    """Peak bytes of ``tiled``: its output, and ``per_tile_pixel`` bytes per pixel of a tile."""
    out_channels = max(channels, 3) if bgr else channels
    return width * height * out_channels + tile_pixels(width, height, reach, side) * per_tile_pixel
