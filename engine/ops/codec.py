"""Decoding and encoding: simplejpeg for JPEG, OpenCV for the rest; limits checked first."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from ..errors import ImageError, ImageTooLarge

MAX_PIXELS = 64_000_000
MAX_INPUT_BYTES = 64 * 1024 * 1024

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclass(frozen=True)
class Limits:
    max_pixels: int = MAX_PIXELS
    max_input_bytes: int = MAX_INPUT_BYTES


def sniff(data) -> str | None:
    """The input's format from its first bytes, or None if it is not one we read."""
    head = bytes(data[:16])
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _check_size(width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height / 1e6:.1f} MP; "
                            f"the limit is {limits.max_pixels / 1e6:.1f} MP")


def decode(data, *, grey: bool = False, limits: Limits = Limits()) -> tuple[np.ndarray, str]:
    """Decode ``data`` (any bytes-like) to BGR/BGRA or, with ``grey``, single-channel.

    Returns the image and the input format. Raises ImageError naming the problem.
    """
    size = len(data)
    if size > limits.max_input_bytes:
        raise ImageTooLarge(f"input is {size} bytes; the limit is {limits.max_input_bytes} bytes")
    fmt = sniff(data)
    if fmt is None:
        raise ImageError("input is not a JPEG, PNG, WebP, BMP or TIFF image (unrecognised first bytes)")
    if fmt == "jpeg":
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            _check_size(width, height, limits)
            image = simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "BGR")
        except ValueError as exc:
            raise ImageError(f"corrupt JPEG: {exc}") from None
        return (image[:, :, 0] if grey else image), fmt
    buf = np.frombuffer(data, dtype=np.uint8)
    flags = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(buf, flags)
    if image is None:
        raise ImageError(f"corrupt or unsupported {fmt.upper()} image: OpenCV could not decode it")
    _check_size(image.shape[1], image.shape[0], limits)
    return image, fmt


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode a uint8 image as ``fmt`` (jpeg, png or webp)."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if fmt == "jpeg":
        if image.ndim == 2 or image.shape[2] == 1:
            grey = image.reshape(image.shape[0], image.shape[1], 1)
            return simplejpeg.encode_jpeg(np.ascontiguousarray(grey), quality, colorspace="GRAY",
                                          colorsubsampling="Gray")
        colorspace = "BGRA" if image.shape[2] == 4 else "BGR"
        return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, colorspace=colorspace)
    if fmt == "png":
        ok, out = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, int(quality)])
    elif fmt == "webp":
        ok, out = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    if not ok:
        raise ImageError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return out.tobytes()
