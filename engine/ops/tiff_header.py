"""TIFF image directories, read strictly enough that the size check can trust them.

The check before decoding is only as good as the header reader's agreement with the
decoder. libtiff (inside OpenCV) keeps the first of two tags with the same number, reads
ImageWidth/ImageLength stored as any 8/16/32-bit integer, and OpenCV decodes only the
first directory. Rather than guess where the two could differ, this reader refuses:

- a size, sample or compression tag given twice, with an unexpected count, or stored
  as a type other than a signed or unsigned 8/16/32-bit integer;
- a second image directory (multi-page TIFF);
- compressions whose decoding cost is not bounded by the pixel count: JPEG-in-TIFF
  (a progressive JPEG's scans would go uncounted) and anything not in ``COMPRESSIONS``;
- more than 4 samples per pixel, or samples wider than 64 bits.

BigTIFF is refused by the codec before it gets here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ImageError

WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC, ORIENTATION, SAMPLES = 256, 257, 258, 259, 262, 274, 277
NAMES = {WIDTH: "ImageWidth", HEIGHT: "ImageLength", BITS: "BitsPerSample", COMPRESSION: "Compression",
         PHOTOMETRIC: "PhotometricInterpretation", ORIENTATION: "Orientation", SAMPLES: "SamplesPerPixel"}
PER_SAMPLE = (BITS,)  # tags with one value per sample; the others have exactly one value
INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i"}  # BYTE SHORT LONG SBYTE SSHORT SLONG
COMPRESSIONS = {1: "none", 2: "CCITT RLE", 3: "CCITT G3", 4: "CCITT G4", 5: "LZW", 8: "Deflate",
                32946: "Deflate", 32773: "PackBits"}
MAX_SAMPLES = 4


@dataclass(frozen=True)
class TiffInfo:
    width: int
    height: int
    orientation: int
    channels: int       # channels OpenCV decodes this to (an upper bound)
    sample_bytes: int   # bytes per decoded sample: 1, 2, 4 or 8


def _refuse(why: str) -> ImageError:
    return ImageError(f"TIFF refused: {why}")


def _values(data, end: str, at: int, tag: int, kind: int, count: int) -> list[int]:
    name = NAMES[tag]
    if kind not in INTEGER_TYPES:
        raise _refuse(f"{name} is stored as type {kind}; only 8/16/32-bit integers are accepted")
    wanted = (1, MAX_SAMPLES) if tag in PER_SAMPLE else (1, 1)
    if not wanted[0] <= count <= wanted[1]:
        raise _refuse(f"{name} has {count} values; expected {'1 to 4' if tag in PER_SAMPLE else 1}")
    code = INTEGER_TYPES[kind]
    size = struct.calcsize(code) * count
    where = at + 8 if size <= 4 else struct.unpack_from(end + "I", data, at + 8)[0]
    if where + size > len(data):
        raise _refuse(f"{name}'s values lie past the end of the file")
    return list(struct.unpack_from(end + code * count, data, where))


def _channels(samples: int, photometric: int) -> int:
    if samples == 1:
        return 1 if photometric in (0, 1) else 3  # grey; palette and others decode to BGR
    return 3 if samples == 3 else 4


def _sample_bytes(bits: int) -> int:
    for size in (1, 2, 4, 8):
        if bits <= 8 * size:
            return size
    raise _refuse(f"{bits}-bit samples; at most 64 bits are accepted")


def read_tiff(data) -> TiffInfo:
    """The first (and only accepted) image directory of a classic TIFF."""
    end = "<" if bytes(data[:2]) == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", data, 4)
    (count,) = struct.unpack_from(end + "H", data, ifd)
    if ifd + 2 + 12 * count + 4 > len(data):
        raise _refuse(f"its image directory ({count} entries at offset {ifd}) runs past the end of the file")
    found: dict[int, list[int]] = {}
    for i in range(count):  # every entry: a repeat after the first 512 counts as much as one before
        at = ifd + 2 + 12 * i
        tag, kind, n = struct.unpack_from(end + "HHI", data, at)
        if tag not in NAMES:
            continue
        if tag in found:
            raise _refuse(f"{NAMES[tag]} is given more than once; decoders disagree on which one counts")
        found[tag] = _values(data, end, at, tag, kind, n)
    (following,) = struct.unpack_from(end + "I", data, ifd + 2 + 12 * count)
    if following:
        raise _refuse(f"a second image directory at offset {following}: multi-page TIFF is not accepted")
    if WIDTH not in found or HEIGHT not in found:
        raise _refuse("no ImageWidth/ImageLength in its image directory")
    compression = found.get(COMPRESSION, [1])[0]
    if compression not in COMPRESSIONS:
        accepted = ", ".join(sorted(set(COMPRESSIONS.values())))
        raise _refuse(f"compression {compression} is not accepted (accepted: {accepted})")
    samples = found.get(SAMPLES, [1])[0]
    if not 1 <= samples <= MAX_SAMPLES:
        raise _refuse(f"{samples} samples per pixel; 1 to {MAX_SAMPLES} are accepted")
    orientation = found.get(ORIENTATION, [1])[0]
    return TiffInfo(found[WIDTH][0], found[HEIGHT][0], orientation if 1 <= orientation <= 8 else 1,
                    _channels(samples, found.get(PHOTOMETRIC, [1])[0]),
                    _sample_bytes(max(found.get(BITS, [1]))))


def tiff_tags(data, wanted: tuple[int, ...]) -> dict[int, int]:
    """Values of short/long tags in the first IFD of a TIFF structure (EXIF's orientation).

    Lenient on purpose: EXIF only ever gives the orientation, never a size to check."""
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
        if tag in wanted and tag not in found and kind in (3, 4):
            found[tag] = struct.unpack_from(end + ("H" if kind == 3 else "I"), data, at + 8)[0]
    return found
