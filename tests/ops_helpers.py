"""Shared helpers for the operation tests: sample images, PSNR and SSIM (numpy only)."""
from __future__ import annotations

import re
import struct
import zlib
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


# Hostile inputs, built at test time: tiny files whose headers are crafted by hand.

def tiff(pages: list[list[tuple]], *, end: str = "<", tail: bytes = b"") -> bytes:
    """A TIFF with one image directory per page; each entry is (tag, type, count, value),
    where a bytes value is stored out of line. ``tail`` is appended after the directories
    (its offset is ``len(tiff(pages, end=end))``, which does not depend on ``tail``)."""
    out = bytearray((b"II*\x00" if end == "<" else b"MM\x00*") + b"\0\0\0\0")
    link = 4  # where the offset of the next directory goes
    for entries in pages:
        packed = []
        for tag, kind, count, value in entries:
            if isinstance(value, bytes):
                out += b"\0" * (len(out) & 1)
                field = struct.pack(end + "I", len(out))
                out += value
            elif kind in (3, 8) and count == 1:
                field = struct.pack(end + ("H" if kind == 3 else "h") + "H", value, 0)
            elif kind in (1, 6) and count == 1:
                field = struct.pack(end + ("B" if kind == 1 else "b") + "3x", value)
            else:
                field = struct.pack(end + ("i" if kind == 9 else "I"), value)
            packed.append(struct.pack(end + "HHI", tag, kind, count) + field)
        out += b"\0" * (len(out) & 1)
        struct.pack_into(end + "I", out, link, len(out))
        out += struct.pack(end + "H", len(packed)) + b"".join(packed)
        link = len(out)
        out += b"\0\0\0\0"
    return bytes(out) + tail


def tiff_page(width: int, height: int, pixels_at: int, *, bits: int = 8, samples: int = 1,
              extra: tuple = ()) -> list[tuple]:
    """Directory entries of an uncompressed, single-strip, chunky TIFF page."""
    per_pixel = samples * bits // 8
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1),
               (262, 3, 1, 1 if samples == 1 else 2), (273, 4, 1, pixels_at), (277, 3, 1, samples),
               (278, 4, 1, height), (279, 4, 1, width * height * per_pixel), *extra]
    return sorted(entries, key=lambda e: e[0])


def tiff_shared_strips(width: int, height: int, *, samples: int = 4, bits: int = 64,
                       float_samples: bool = True) -> bytes:
    """A Deflate TIFF whose every one-row strip points at the same compressed row of zeros:
    an 8000 x 8000 float64 RGBA page (2 GB decoded, 64 MP: under the pixel limit) is ~64 KB."""
    row = zlib.compress(b"\0" * (width * samples * bits // 8), 9)

    def entries(row_at: int) -> list[tuple]:
        return [(256, 4, 1, width), (257, 4, 1, height),
                (258, 3, samples, struct.pack("<" + "H" * samples, *[bits] * samples)),
                (259, 3, 1, 8), (262, 3, 1, 2), (273, 4, height, struct.pack(f"<{height}I", *[row_at] * height)),
                (277, 3, 1, samples), (278, 4, 1, 1),
                (279, 4, height, struct.pack(f"<{height}I", *[len(row)] * height)), (284, 3, 1, 1),
                (339, 3, samples, struct.pack("<" + "H" * samples, *[3 if float_samples else 1] * samples))]

    return tiff([entries(len(tiff([entries(0)])))], tail=row)


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(start, marker, end) of each marker segment; a scan runs to the next marker."""
    at, found = 2, []
    while at < len(data):
        marker = data[at + 1]
        if marker == 0xD9:
            return found + [(at, marker, at + 2)]
        (length,) = struct.unpack_from(">H", data, at + 2)
        end = at + 2 + length
        if marker == 0xDA:
            end = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(data, end).start()
        found.append((at, marker, end))
        at = end
    return found


def progressive_jpeg_with_scans(extra_scans: int, side: int = 512) -> bytes:
    """A valid progressive JPEG of a flat grey square, with its smallest scan repeated
    ``extra_scans`` more times before the end: each repeat is a few bytes, yet a full
    pass over the image for the decoder (how a 1.4 MB file holds a process for a minute)."""
    ok, out = cv2.imencode(".jpg", np.full((side, side, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    data = out.tobytes()
    start, _, end = min((s for s in jpeg_segments(data) if s[1] == 0xDA), key=lambda s: s[2] - s[0])
    return data[:-2] + data[start:end] * extra_scans + data[-2:]
