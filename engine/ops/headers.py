"""Read an image's size and EXIF orientation from its header, without decoding it.

This is what lets the codec refuse a decompression bomb before allocating anything,
and lets the planner pick a JPEG scale. Each reader looks only at a few bytes:

- JPEG: simplejpeg's header reader, plus the APP1 "Exif" segment for orientation;
- PNG: the IHDR chunk, plus an eXIf chunk if there is one before the image data;
- WebP: the VP8 / VP8L / VP8X chunk, plus an EXIF chunk for VP8X files;
- BMP: the DIB header (any of its versions);
- TIFF: the first IFD's ImageWidth, ImageLength and Orientation tags.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import simplejpeg

from ..errors import ImageError

TAG_WIDTH, TAG_HEIGHT, TAG_ORIENTATION = 256, 257, 274
MAX_SEGMENTS = 1000  # markers or chunks walked before giving up on finding EXIF


@dataclass(frozen=True)
class Header:
    format: str
    width: int        # as stored, before orientation
    height: int
    orientation: int = 1  # EXIF orientation, 1-8 (1: as stored)
    grey: bool = False    # stored as one channel (only known for JPEG; others decode as stored)

    @property
    def swaps_sides(self) -> bool:
        """Orientations 5-8 turn the image a quarter: width and height trade places."""
        return self.orientation >= 5

    @property
    def display_size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.swaps_sides else (self.width, self.height)


def _corrupt(fmt: str, what: str) -> ImageError:
    return ImageError(f"corrupt {fmt.upper()} header: {what}")


def tiff_tags(data, wanted: tuple[int, ...]) -> dict[int, int]:
    """Values of short/long tags in the first IFD of a TIFF structure (also EXIF's)."""
    order = bytes(data[:2])
    if len(data) < 8 or order not in (b"II", b"MM"):
        return {}
    end = "<" if order == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", data, 4)
    if ifd + 2 > len(data):
        return {}
    (count,) = struct.unpack_from(end + "H", data, ifd)
    found = {}
    for i in range(min(count, 512)):
        at = ifd + 2 + 12 * i
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack_from(end + "HH", data, at)
        if tag in wanted:
            if kind == 3:  # SHORT
                found[tag] = struct.unpack_from(end + "H", data, at + 8)[0]
            elif kind == 4:  # LONG
                found[tag] = struct.unpack_from(end + "I", data, at + 8)[0]
    return found


def _orientation(exif: bytes) -> int:
    value = tiff_tags(exif, (TAG_ORIENTATION,)).get(TAG_ORIENTATION, 1)
    return value if 1 <= value <= 8 else 1


def _jpeg(data: bytes) -> Header:
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise _corrupt("jpeg", str(exc)) from None
    at, orientation = 2, 1
    for _ in range(MAX_SEGMENTS):
        if at + 4 > len(data) or data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF after this
            break
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if marker == 0xE1 and data[at + 4:at + 10] == b"Exif\x00\x00":
            orientation = _orientation(bytes(data[at + 10:at + 2 + length]))
            break
        at += 2 + length
    return Header("jpeg", width, height, orientation, grey=colourspace == "Gray")


def _png(data: bytes) -> Header:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _corrupt("png", "no IHDR chunk")
    width, height = struct.unpack_from(">II", data, 16)
    at, orientation = 8, 1
    for _ in range(MAX_SEGMENTS):
        if at + 8 > len(data):
            break
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"eXIf":
            orientation = _orientation(bytes(data[at + 8:at + 8 + length]))
            break
        at += 12 + length
    return Header("png", width, height, orientation)


def _webp(data: bytes) -> Header:
    if len(data) < 30:
        raise _corrupt("webp", "file too short")
    kind = bytes(data[12:16])
    if kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _corrupt("webp", "bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, 26)
        return Header("webp", w & 0x3FFF, h & 0x3FFF)
    if kind == b"VP8L":
        if data[20] != 0x2F:
            raise _corrupt("webp", "bad VP8L signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return Header("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        at, orientation = 30 + (int.from_bytes(data[16:20], "little") - 10), 1
        for _ in range(MAX_SEGMENTS):
            if at + 8 > len(data):
                break
            name, length = struct.unpack_from("<4sI", data, at)
            if name == b"EXIF":
                exif = bytes(data[at + 8:at + 8 + length])
                orientation = _orientation(exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
                break
            at += 8 + length + (length & 1)
        return Header("webp", w, h, orientation)
    raise _corrupt("webp", f"unknown chunk {kind!r}")


def _bmp(data: bytes) -> Header:
    if len(data) < 26:
        raise _corrupt("bmp", "file too short")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", data, 18)
    else:
        w, h = struct.unpack_from("<ii", data, 18)
    return Header("bmp", abs(w), abs(h))


def _tiff(data: bytes) -> Header:
    tags = tiff_tags(memoryview(data), (TAG_WIDTH, TAG_HEIGHT, TAG_ORIENTATION))  # IFD may be anywhere
    if TAG_WIDTH not in tags or TAG_HEIGHT not in tags:
        raise _corrupt("tiff", "no ImageWidth/ImageLength in the first IFD")
    orientation = tags.get(TAG_ORIENTATION, 1)
    return Header("tiff", tags[TAG_WIDTH], tags[TAG_HEIGHT], orientation if 1 <= orientation <= 8 else 1)


READERS = {"jpeg": _jpeg, "png": _png, "webp": _webp, "bmp": _bmp, "tiff": _tiff}


def read_header(data, fmt: str) -> Header:
    """The header of ``data`` (already sniffed as ``fmt``); ImageError if it is corrupt."""
    try:
        return READERS[fmt](data)
    except struct.error:
        raise _corrupt(fmt, "truncated") from None
