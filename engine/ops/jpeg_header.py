"""JPEG markers walked as libjpeg walks them, to count what decoding will cost.

One pass over the raw bytes, before decoding: marker segments are skipped by their
length, and the entropy-coded data after each start-of-scan by a regular-expression
search for the next marker (C speed). What it refuses, with the reason:

- more than ``MAX_SCANS`` scans (SOS markers): each scan of a progressive JPEG is a pass
  over the whole image, and a scan can be a dozen bytes, so a 1.4 MB file of repeated
  scans held a process for a minute. libjpeg-turbo's progressive script (OpenCV,
  simplejpeg, cjpeg) writes 10 scans for colour and 6 for grey; 100 leaves ample room
  for other encoders' scripts;
- more than one frame header (SOF marker), or one that disagrees with libjpeg's own
  reading of the header: the size checked must be the size decoded;
- more than ``MAX_MARKERS`` marker segments (the walk itself must stay cheap).

Stray bytes between markers are skipped the way libjpeg skips them, so scans hidden
after them are still counted. The walk stops at the first end-of-image marker.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ..errors import ImageError

MAX_SCANS = 100
MAX_MARKERS = 4096
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}      # RSTn and TEM carry no length
# In entropy-coded data: 0xFF 0x00 is a stuffed byte, 0xFF 0xD0-D7 a restart, 0xFF 0xFF fill.
_NEXT_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NEXT_MARKER = re.compile(rb"\xff+([^\x00\xff])")  # libjpeg's next_marker: skip junk and fill


@dataclass(frozen=True)
class JpegInfo:
    width: int
    height: int
    components: int
    scans: int
    coefficient_bytes: int  # the whole-image coefficient buffer a multi-scan decode needs (else 0)
    exif: bytes | None      # the first APP1 Exif block before the first scan, without its prefix
    arithmetic: bool = False  # arithmetic-coded (simplejpeg cannot decode it: OpenCV does)


def _refuse(why: str) -> ImageError:
    return ImageError(f"JPEG refused: {why}")


def _frame(data, at: int, length: int) -> tuple[int, int, list[tuple[int, int]]]:
    if length < 8:
        raise _refuse("a frame header (SOF) is too short")
    if at + 2 + length > len(data):
        raise _refuse("the file ends inside its frame header (SOF): it is cut off")
    height, width, count = struct.unpack_from(">HHB", data, at + 5)
    if length < 8 + 3 * count:
        raise _refuse("a frame header (SOF) is shorter than its component list")
    sampling = [(data[at + 11 + 3 * i] >> 4, data[at + 11 + 3 * i] & 15) for i in range(count)]
    return width, height, sampling


def _coefficients(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """Bytes of libjpeg's whole-image coefficient buffer: 64 2-byte values per 8x8 block."""
    hmax = max((h for h, _ in sampling), default=1) or 1
    vmax = max((v for _, v in sampling), default=1) or 1
    blocks = sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8) for h, v in sampling)
    return blocks * 128


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def walk(data) -> JpegInfo:
    """Frame size, scan count and EXIF block of a JPEG, refusing what costs too much."""
    size = len(data)
    at, frames, scans, exif, progressive, arithmetic = 2, [], 0, None, False, False
    for _ in range(MAX_MARKERS):
        if at + 2 > size:
            break  # truncated: libjpeg decodes what there is
        if data[at] != 0xFF or data[at + 1] in (0x00, 0xFF):
            found = _NEXT_MARKER.search(data, at)
            if found is None:
                break
            at = found.start(1) - 1
        marker = data[at + 1]
        if marker == 0xD9:  # end of image: libjpeg reads no further
            break
        if marker in _STANDALONE:
            at += 2
            continue
        if at + 4 > size:
            break
        (length,) = struct.unpack_from(">H", data, at + 2)
        if length < 2:
            raise _refuse(f"a marker segment at byte {at} has length {length}")
        if marker in _SOF:
            frames.append(_frame(data, at, length))
            progressive = progressive or marker in _PROGRESSIVE
            arithmetic = arithmetic or marker in _ARITHMETIC
        elif marker == 0xDA:
            scans += 1
            if scans > MAX_SCANS:
                raise _refuse(f"it has more than {MAX_SCANS} scans (SOS markers); each scan is a pass over the "
                              f"whole image, and common encoders write 10 or fewer")
            found = _NEXT_IN_SCAN.search(data, at + 2 + length)
            at = found.start() if found else size
            continue
        elif marker == 0xE1 and exif is None and not scans and data[at + 4:at + 10] == b"Exif\x00\x00":
            exif = bytes(data[at + 10:at + 2 + length])
        at += 2 + length
    else:
        raise _refuse(f"it has more than {MAX_MARKERS} marker segments")
    if len(frames) != 1:
        raise _refuse(f"it has {len(frames)} frame headers (SOF markers); exactly one is accepted")
    width, height, sampling = frames[0]
    multi_scan = progressive or scans > 1
    return JpegInfo(width, height, len(sampling), scans,
                    _coefficients(width, height, sampling) if multi_scan else 0, exif, arithmetic)
