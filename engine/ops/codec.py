"""Decoding and encoding: simplejpeg for JPEG, OpenCV for the rest; limits checked first.

Before anything is decoded, ``probe`` reads the header (``headers.py``) and refuses an
input over any of three limits: its size in bytes, its pixels, and the bytes decoding
allocates (pixels x channels x bytes per sample, so a 16-bit or float TIFF counts 2 to 8
times an 8-bit one, plus a progressive JPEG's coefficient buffer). Only formats whose
headers can be checked are accepted (``ACCEPTED``).

Before anything is encoded, ``check_output`` refuses a result the output format cannot hold
(``MAX_OUTPUT_SIDE``) as ``ImageTooLarge`` saying which format holds it; an encoder that
still fails is an ``ImageError`` with the encoder's reason, never an internal error.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from ..errors import ImageError, ImageTooLarge
from ..protocol import MAX_INPUT_BYTES
from .headers import Header, read_header

MAX_PIXELS = 64_000_000
# 64 MP of 16-bit RGBA, or of a progressive 4:2:0 colour JPEG (output + coefficients).
MAX_DECODED_BYTES = 512 * 1024 * 1024
# What one task may hold at once (input bytes, decoded image, a step's intermediates and output;
# checked before decoding and before each step): a Raspberry Pi 4 (4 GiB, 4 cores, so 4 pool
# processes of ~100 MiB each with the models) holds four at once with ~1.4 GiB to spare, and a
# 64 MP colour image (192 MB) fits through a step with its output.
MAX_MEMORY_BYTES = 512 * 1024 * 1024
ACCEPTED = "JPEG, PNG, WebP, BMP and TIFF (still, single-image, classic TIFF; not BigTIFF)"
# The longest side each output format's encoder takes, in px: libjpeg-turbo's JPEG_MAX_DIMENSION,
# libwebp's WEBP_MAX_DIMENSION, and libpng's default user limit (OpenCV keeps it when writing).
MAX_OUTPUT_SIDE = {"jpeg": 65_500, "png": 1_000_000, "webp": 16_383}

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "bigtiff"),
    (b"MM\x00+", "bigtiff"),
)


@dataclass(frozen=True)
class Limits:
    max_pixels: int = MAX_PIXELS
    max_input_bytes: int = MAX_INPUT_BYTES
    max_decoded_bytes: int = MAX_DECODED_BYTES
    max_memory_bytes: int = MAX_MEMORY_BYTES


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


def _check_decoded_bytes(header: Header, limits: Limits) -> None:
    if header.decoded_bytes > limits.max_decoded_bytes:
        raise ImageTooLarge(f"{header.format.upper()} image {header.width}x{header.height} would decode to "
                            f"{header.decoded_bytes / 1e6:.1f} MB (pixels x channels x bytes per sample, "
                            f"16-bit and float samples counting 2-8 bytes); the limit is "
                            f"{limits.max_decoded_bytes / 1e6:.1f} MB")


def probe(data, limits: Limits = Limits()) -> Header:
    """Format, size and orientation from the header alone; refuses what is over the limits."""
    size = len(data)
    if size > limits.max_input_bytes:
        raise ImageTooLarge(f"input is {size} bytes; the limit is {limits.max_input_bytes} bytes")
    fmt = sniff(data)
    if fmt is None:
        raise ImageError(f"input is not an image of a format accepted: {ACCEPTED} (unrecognised first bytes)")
    if fmt == "bigtiff":
        raise ImageError(f"BigTIFF is not accepted: its header is not checked before decoding (accepted: {ACCEPTED})")
    try:
        header = read_header(data, fmt)
    except (IndexError, struct.error) as exc:  # a header cut off where a reader did not expect it
        raise ImageError(f"{fmt.upper()} header is truncated or malformed ({type(exc).__name__}); "
                         "the file is damaged or cut off") from exc
    if header.width <= 0 or header.height <= 0:
        raise ImageError(f"{fmt.upper()} header gives an empty {header.width}x{header.height} image")
    _check_size(header.width, header.height, limits)
    _check_decoded_bytes(header, limits)
    return header


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the image is the right way up."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint8:
        return image
    # In place where possible: a wide decode must not be copied several times over.
    if image.dtype == np.uint16:
        return np.right_shift(image, 8, out=image).astype(np.uint8)
    if image.dtype.kind == "f":
        np.nan_to_num(image, copy=False)
        np.multiply(image, 255, out=image)
        np.add(image, 0.5, out=image)
        return np.clip(image, 0, 255, out=image).astype(np.uint8)
    return cv2.convertScaleAbs(image)


def _decode_jpeg(data, grey: bool, header: Header, min_size: tuple[int, int] | None) -> np.ndarray:
    scale = {}
    if min_size is not None:  # DCT scaling: at least min_size (as displayed), at least 2x smaller
        w, h = min_size[::-1] if header.swaps_sides else min_size
        scale = {"min_width": w, "min_height": h, "min_factor": 2.0}
    try:
        grey = grey or header.grey  # a grey JPEG stays one channel, as grey PNGs do
        image = simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "BGR", **scale)
        return image[:, :, 0] if grey else image
    except ValueError:
        return _decode_opencv(data, grey, "jpeg")  # e.g. CMYK or arithmetic-coded JPEGs


def _decode_opencv(data, grey: bool, fmt: str) -> np.ndarray:
    flags = (cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION) if grey else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"corrupt or unsupported {fmt.upper()} image: it could not be decoded")
    return _to_uint8(image)


def decode(data, *, grey: bool = False, limits: Limits = Limits(), header: Header | None = None,
           min_size: tuple[int, int] | None = None) -> tuple[np.ndarray, str]:
    """Decode ``data`` (any bytes-like) to BGR/BGRA or, with ``grey``, single-channel,
    the right way up (EXIF orientation applied). Grey inputs stay single-channel.

    ``min_size`` (width, height as displayed) lets a JPEG decode already scaled down by
    2x or more, but never below that size. Returns the image and the input format.
    Raises ImageError (ImageTooLarge over the limits, checked before decoding).
    """
    header = header or probe(data, limits)
    if header.format == "jpeg":
        image = _decode_jpeg(data, grey, header, min_size)
    else:
        image = _decode_opencv(data, grey, header.format)
    _check_size(image.shape[1], image.shape[0], limits)
    if image.ndim == 3 and image.shape[2] == 2:  # grey + alpha
        image = np.dstack([image[:, :, 0]] * 3 + [image[:, :, 1]])
    return orient(image, header.orientation), header.format


def check_output(width: int, height: int, fmt: str) -> None:
    """Refuse, before encoding, a ``width`` x ``height`` result that ``fmt`` cannot hold."""
    if fmt not in MAX_OUTPUT_SIDE:
        raise ValueError(f"unknown output format {fmt!r}")
    if width < 1 or height < 1:
        raise ImageError(f"the result is {width}x{height} px: an empty image cannot be encoded")
    side, limit = max(width, height), MAX_OUTPUT_SIDE[fmt]
    if side > limit:
        others = [f for f, most in MAX_OUTPUT_SIDE.items() if most >= side]
        raise ImageTooLarge(f"the result is {width}x{height} px; {fmt.upper()} holds at most {limit:,} px per "
                            f"side: resize it first" + (f" or ask for {' or '.join(others)}" if others else ""))


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 90, subsampling: str = "444") -> bytes:
    """Encode a uint8 image as ``fmt`` (jpeg, png or webp); ``subsampling``: JPEG chroma.
    ImageTooLarge if the format cannot hold its size, ImageError if the encoder refuses it."""
    check_output(image.shape[1], image.shape[0], fmt)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    try:
        if fmt == "jpeg":
            return _encode_jpeg(image, quality, subsampling)
        flag = cv2.IMWRITE_PNG_COMPRESSION if fmt == "png" else cv2.IMWRITE_WEBP_QUALITY
        ok, out = cv2.imencode(f".{fmt}", image, [flag, int(quality)])
    except (ValueError, cv2.error) as exc:  # what check_output does not foresee, e.g. memory
        raise ImageError(f"the {fmt.upper()} encoder refused the {image.shape} result: {str(exc)[:200]}") from exc
    if not ok:
        raise ImageError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return out.tobytes()


def _encode_jpeg(image: np.ndarray, quality: int, subsampling: str) -> bytes:
    if image.ndim == 2 or image.shape[2] == 1:
        grey = image.reshape(image.shape[0], image.shape[1], 1)
        return simplejpeg.encode_jpeg(np.ascontiguousarray(grey), quality, colorspace="GRAY",
                                      colorsubsampling="Gray")
    colorspace = "BGRA" if image.shape[2] == 4 else "BGR"
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, colorspace=colorspace,
                                  colorsubsampling=subsampling)
