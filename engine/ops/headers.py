"""Read an image's size and EXIF orientation from its header, without decoding it.

This is what lets the codec refuse a decompression bomb before allocating anything,
and lets the planner pick a JPEG scale. A check is only as good as the reader's
agreement with the decoder, so where a reader cannot be sure it refuses (ImageError,
saying why) rather than guess. Each reader also bounds what decoding will allocate
(``decoded_bytes``: pixels x channels x bytes per sample, plus JPEG's coefficient buffer):

- JPEG: every marker up to the end of image (``jpeg_header.py``: one frame header,
  at most 100 scans), checked against simplejpeg's header reader; APP1 "Exif" orientation;
- PNG: the IHDR chunk (bit depth and colour type), the chunks before the image data
  (an eXIf orientation; ``acTL``, an animation, is refused);
- WebP: the VP8 / VP8L / VP8X chunk (an animated VP8X is refused), EXIF for VP8X files;
- BMP: the DIB header (any of its versions);
- TIFF: the one image directory, strictly (``tiff_header.py``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import simplejpeg

from ..errors import ImageError
from .jpeg_header import walk as walk_jpeg
from .tiff_header import read_tiff, tiff_tags

TAG_ORIENTATION = 274
MAX_SEGMENTS = 1000  # chunks walked before the image data (libpng keeps at most 1000 unknown ones)


@dataclass(frozen=True)
class Header:
    format: str
    width: int        # as stored, before orientation
    height: int
    orientation: int = 1  # EXIF orientation, 1-8 (1: as stored)
    grey: bool = False    # stored as one channel (only known for JPEG; others decode as stored)
    decoded_bytes: int = 0  # what decoding allocates at most (0: not estimated)
    in_place: bool = False  # decoded straight into its result (simplejpeg), not by OpenCV

    @property
    def swaps_sides(self) -> bool:
        """Orientations 5-8 turn the image a quarter: width and height trade places."""
        return self.orientation >= 5

    @property
    def display_size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.swaps_sides else (self.width, self.height)

    def peak_bytes(self, *, grey: bool = False, scaled: bool = False) -> int:
        """The most decoding holds at once (``grey``, ``scaled``: as the planner asks a JPEG
        to be decoded; scaled is at least 2x smaller on each side). simplejpeg decodes into
        its result (with the coefficients of a multi-scan JPEG, and libjpeg's row buffers);
        a turned image is copied. OpenCV's decoders hold a buffer of the image besides the
        result (measured: 2.0-2.04x the decoded bytes for PNG, BMP and TIFF, 1.75x for WebP),
        which the 8-bit conversion or the turn that may follow fit in; a CMYK JPEG's fourth
        channel and a grey + alpha TIFF made BGRA need a little more."""
        pixels = self.width * self.height
        decoded = self.decoded_bytes or pixels * 4
        if self.in_place:
            full = pixels * (1 if self.grey else 3)
            shown = -(-self.width // 2) * -(-self.height // 2) if scaled else pixels
            output = shown * (1 if grey or self.grey else 3)
            held = output + max(0, decoded - full)  # the coefficients are the whole image's however it is scaled
            return held + held // 8 + (output if self.orientation > 1 else 0)
        return 2 * decoded + decoded // 16 + (pixels * 4 if self.format in ("jpeg", "tiff") else 0)


def _corrupt(fmt: str, what: str) -> ImageError:
    return ImageError(f"corrupt {fmt.upper()} header: {what}")


def _orientation(exif: bytes) -> int:
    value = tiff_tags(exif, (TAG_ORIENTATION,)).get(TAG_ORIENTATION, 1)
    return value if 1 <= value <= 8 else 1


def _jpeg(data) -> Header:
    info = walk_jpeg(data)  # refuses several frame headers and too many scans
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise _corrupt("jpeg", str(exc)) from None
    if (width, height) != (info.width, info.height):
        raise ImageError(f"JPEG refused: its frame header says {info.width}x{info.height} "
                         f"but libjpeg reads {width}x{height}")
    grey = colourspace == "Gray"
    output = width * height * (1 if grey else 3)
    orientation = _orientation(info.exif) if info.exif is not None else 1
    in_place = colourspace not in ("CMYK", "YCCK") and not info.arithmetic  # else codec falls back to OpenCV
    return Header("jpeg", width, height, orientation, grey=grey, decoded_bytes=output + info.coefficient_bytes,
                  in_place=in_place)


# PNG colour types: channels decoded (grey + alpha becomes BGRA; any tRNS adds alpha).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}


def _png(data: bytes) -> Header:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _corrupt("png", "no IHDR chunk")
    width, height, depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    if colour_type not in _PNG_CHANNELS:
        raise _corrupt("png", f"unknown colour type {colour_type}")
    channels = _PNG_CHANNELS[colour_type]
    at, orientation = 8, 1
    for _ in range(MAX_SEGMENTS):
        if at + 8 > len(data):
            break
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"acTL":
            raise ImageError("animated PNG (an acTL chunk) is not accepted: only still images are")
        if kind == b"tRNS":
            channels = 4
        if kind == b"eXIf" and orientation == 1:
            orientation = _orientation(bytes(data[at + 8:at + 8 + length]))
        at += 12 + length
    else:
        raise ImageError(f"PNG refused: more than {MAX_SEGMENTS} chunks before the image data")
    sample = 2 if depth == 16 else 1
    return Header("png", width, height, orientation, decoded_bytes=width * height * channels * sample)


def _webp(data: bytes) -> Header:
    if len(data) < 30:
        raise _corrupt("webp", "file too short")
    kind = bytes(data[12:16])
    if kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _corrupt("webp", "bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, 26)
        return Header("webp", w & 0x3FFF, h & 0x3FFF, decoded_bytes=(w & 0x3FFF) * (h & 0x3FFF) * 4)
    if kind == b"VP8L":
        if data[20] != 0x2F:
            raise _corrupt("webp", "bad VP8L signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return Header("webp", w, h, decoded_bytes=w * h * 4)
    if kind == b"VP8X":
        if data[20] & 0x02:
            raise ImageError("animated WebP is not accepted: only still images are")
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
        return Header("webp", w, h, orientation, decoded_bytes=w * h * 4)
    raise _corrupt("webp", f"unknown chunk {kind!r}")


def _bmp(data: bytes) -> Header:
    if len(data) < 26:
        raise _corrupt("bmp", "file too short")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", data, 18)
    else:
        w, h = struct.unpack_from("<ii", data, 18)
    (bits,) = struct.unpack_from("<H", data, 24 if dib == 12 else 28)
    w, h = abs(w), abs(h)
    return Header("bmp", w, h, decoded_bytes=w * h * (4 if bits == 32 else 3))


def _tiff(data) -> Header:
    info = read_tiff(data)
    return Header("tiff", info.width, info.height, info.orientation,
                  decoded_bytes=info.width * info.height * info.channels * info.sample_bytes)


READERS = {"jpeg": _jpeg, "png": _png, "webp": _webp, "bmp": _bmp, "tiff": _tiff}


def read_header(data, fmt: str) -> Header:
    """The header of ``data`` (already sniffed as ``fmt``); ImageError if it is corrupt."""
    try:
        return READERS[fmt](data)
    except struct.error:
        raise _corrupt(fmt, "truncated") from None
