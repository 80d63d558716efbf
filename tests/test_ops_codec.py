"""Inputs: every format, grey/colour/alpha, EXIF orientation, and size limits read from
headers so that decompression bombs are refused without allocating."""
from __future__ import annotations

import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
import simplejpeg
from ops_helpers import psnr, sample, unpng

from engine import ops
from engine.errors import ImageError, ImageTooLarge
from engine.ops import codec

pytestmark = pytest.mark.timeout(60)

META_KEYS = {"format", "width", "height", "channels", "input_format", "decode_ms", "ops_ms", "encode_ms",
             "pipeline_ms"}


@pytest.fixture(scope="module")
def cat():
    return sample("chelsea.jpg", max_side=120)


def encode(image, ext, *params):
    ok, out = cv2.imencode(ext, image, list(params))
    assert ok
    return out.tobytes()


@pytest.mark.parametrize("ext, fmt, params", [(".png", "png", ()), (".bmp", "bmp", ()), (".tiff", "tiff", ()),
                                              (".webp", "webp", (cv2.IMWRITE_WEBP_QUALITY, 101))])
def test_lossless_inputs_decode_exactly(cat, ext, fmt, params):
    out, meta = ops.run(encode(cat, ext, *params), "invert|png")
    assert np.array_equal(unpng(out), 255 - cat)
    assert meta["input_format"] == fmt and set(meta) >= META_KEYS


def test_jpeg_input_decodes_like_opencv(cat):
    data = simplejpeg.encode_jpeg(cat, 95, colorspace="BGR")
    out, meta = ops.run(memoryview(data), "png")  # a zmq frame arrives as a memoryview
    assert psnr(unpng(out), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)) > 40
    assert meta["input_format"] == "jpeg" and meta["channels"] == 3


def test_webp_lossy_and_default_output_format_follows_input(cat):
    out, meta = ops.run(encode(cat, ".webp", cv2.IMWRITE_WEBP_QUALITY, 90), "flip")
    assert meta["format"] == "webp" and out[:4] == b"RIFF"
    out, meta = ops.run(encode(cat, ".bmp"), "flip")
    assert meta["format"] == "png"  # BMP and TIFF are not output formats


def test_alpha_is_kept_through_colour_operations(cat):
    bgra = np.dstack([cat, np.tile(np.linspace(0, 255, cat.shape[1]).astype(np.uint8), (cat.shape[0], 1))])
    for ext in (".png", ".webp"):
        params = (cv2.IMWRITE_WEBP_QUALITY, 101) if ext == ".webp" else ()
        out, meta = ops.run(encode(bgra, ext, *params), "invert|sepia|blur:sigma=1|png")
        result = unpng(out)
        assert meta["channels"] == 4 and np.array_equal(result[:, :, 3], cv2.GaussianBlur(bgra, (0, 0), 1)[:, :, 3])


def test_grey_inputs_stay_grey_and_16_bit_becomes_8_bit(cat):
    grey = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
    out, meta = ops.run(encode(grey, ".png"), "flip|png")
    assert meta["channels"] == 1 and np.array_equal(unpng(out), grey[:, ::-1])
    wide = grey.astype(np.uint16) * 257
    out, meta = ops.run(encode(wide, ".png"), "png")
    assert np.array_equal(unpng(out), grey)
    out, meta = ops.run(encode(wide, ".tiff"), "png")
    assert np.array_equal(unpng(out), grey)


def exif(orientation: int) -> bytes:
    """A minimal little-endian EXIF (TIFF) block holding only the Orientation tag."""
    return b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, orientation, 0, 0)


# What each EXIF orientation means, written with numpy alone (an independent reference).
ORIENTED = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_honoured_like_opencv(cat, orientation):
    plain = simplejpeg.encode_jpeg(cat, 95, colorspace="BGR")
    app1 = b"Exif\x00\x00" + exif(orientation)
    data = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + plain[2:]
    out, _meta = ops.run(data, "png")
    result = unpng(out)
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV applies EXIF
    assert result.shape == reference.shape and psnr(result, reference) > 40
    upright = ORIENTED[orientation](cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR))
    assert psnr(result, np.ascontiguousarray(upright)) > 40
    out, _ = ops.run(data, "grayscale|png")  # the planner's grey decode is turned too
    assert unpng(out).shape == result.shape[:2]


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_exif_chunk_orientation_is_honoured(cat, orientation):
    plain = encode(cat, ".png")
    data = plain[:33] + chunk(b"eXIf", exif(orientation)) + plain[33:]
    out, _ = ops.run(data, "png")
    assert np.array_equal(unpng(out), np.ascontiguousarray(ORIENTED[orientation](cat)))


# Headers that claim huge images, with (almost) no pixel data behind them.
def png_bomb(w, h):
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def webp_bomb(kind):
    if kind == b"VP8X":
        body = b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    elif kind == b"VP8L":
        body = b"\x2f" + struct.pack("<I", 16383 | (16383 << 14)) + b"\x00" * 5
    else:
        body = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", 16383, 16383) + b"\x00" * 10
    riff = b"WEBP" + kind + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def jpeg_bomb():
    data = bytearray(simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8), 90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def bmp_bomb():
    dib = struct.pack("<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + dib


def tiff_bomb():
    entries = [(256, 4, 1, 100000), (257, 4, 1, 100000)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd


BOMBS = {"png": png_bomb(100000, 100000), "jpeg": jpeg_bomb(), "webp-vp8x": webp_bomb(b"VP8X"),
         "webp-vp8l": webp_bomb(b"VP8L"), "webp-vp8": webp_bomb(b"VP8 "), "bmp": bmp_bomb(), "tiff": tiff_bomb()}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_decompression_bombs_are_refused_from_the_header_without_allocating(name):
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=r"the limit is 64.0 MP"):
            ops.run(BOMBS[name], "grayscale")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_limits_are_per_call(cat):
    data = encode(cat, ".png")
    with pytest.raises(ImageTooLarge, match=r"pixel|MP"):
        ops.run(data, "flip", limits=ops.Limits(max_pixels=1000))
    with pytest.raises(ImageTooLarge, match=r"bytes"):
        ops.run(data, "flip", limits=ops.Limits(max_input_bytes=100))
    with pytest.raises(ImageTooLarge, match=r"resize would make"):
        ops.run(data, "resize:width=16000,height=16000,mode=exact")


@pytest.mark.parametrize("data, match", [
    (b"", "unrecognised"), (b"GIF89a" + b"\0" * 40, "unrecognised"), (b"\xff\xd8\xff\xe0" + b"\0" * 10, "JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 4, "PNG"), (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
])
def test_garbage_is_an_image_error(data, match):
    with pytest.raises(ImageError, match=match):
        ops.run(data, "flip")


def test_truncated_images_are_image_errors(cat):
    for data in (encode(cat, ".png"), encode(cat, ".webp"), encode(cat, ".tiff"), encode(cat, ".bmp")):
        with pytest.raises(ImageError):
            ops.run(data[:60], "flip")


def test_probe_reports_displayed_size_after_orientation(cat):
    plain = encode(cat, ".png")
    header = codec.probe(plain[:33] + chunk(b"eXIf", exif(6)) + plain[33:])
    assert (header.width, header.height, header.orientation) == (120, 80, 6)
    assert header.display_size == (80, 120)


def test_grey_jpeg_stays_one_channel_unless_colour_is_added():
    data = simplejpeg.encode_jpeg(sample("camera.jpg", grey=True)[:, :, None], 90, colorspace="GRAY",
                                  colorsubsampling="Gray")
    _, meta = ops.run(data, "flip")
    assert meta["channels"] == 1
    _, meta = ops.run(data, "sepia")
    assert meta["channels"] == 3


def test_tiff_with_its_directory_at_the_end_is_read(cat):
    """Many TIFF writers put the image directory after the pixels."""
    big = cv2.resize(cat, (1200, 800))
    pixels = big.tobytes()
    entries = [(256, 4, 1, 1200), (257, 4, 1, 800), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 8), (277, 3, 1, 3), (278, 4, 1, 800), (279, 4, 1, len(pixels)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    data = b"II*\x00" + struct.pack("<I", 8 + len(pixels)) + pixels + ifd
    assert len(data) > 1 << 21
    out, meta = ops.run(data, "png")
    assert (meta["width"], meta["height"]) == (1200, 800)
    assert np.array_equal(unpng(out), big[:, :, ::-1])  # stored RGB, returned BGR


def test_webp_exif_chunk_orientation_is_honoured(cat):
    simple = encode(cat, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101)  # RIFF / VP8L
    image_chunk = simple[12:]
    h, w = cat.shape[:2]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (
        h - 1).to_bytes(3, "little")
    body = exif(6)
    exif_chunk = b"EXIF" + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)
    riff = b"WEBP" + vp8x + image_chunk + exif_chunk
    out, _ = ops.run(b"RIFF" + struct.pack("<I", len(riff)) + riff, "png")
    assert np.array_equal(unpng(out), np.ascontiguousarray(ORIENTED[6](cat)))


def test_big_endian_exif_is_read(cat):
    plain = simplejpeg.encode_jpeg(cat, 95, colorspace="BGR")
    block = b"MM\x00*" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, 8, 0, 0)
    app1 = b"Exif\x00\x00" + block
    data = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + plain[2:]
    assert codec.probe(data).orientation == 8
    _out, meta = ops.run(data, "png")
    assert (meta["width"], meta["height"]) == (cat.shape[0], cat.shape[1])


@pytest.mark.parametrize("subsampling", ["444", "422", "420"])
def test_the_jpeg_step_encodes_with_the_chroma_subsampling_asked_for(subsampling):
    photo = sample("chelsea.jpg", max_side=400)
    data = encode(photo, ".jpg")
    out, _meta = ops.run(data, f"jpeg:quality=80,subsampling={subsampling}")
    assert simplejpeg.decode_jpeg_header(out)[3] == subsampling
    assert psnr(simplejpeg.decode_jpeg(out, colorspace="BGR"), simplejpeg.decode_jpeg(data, colorspace="BGR")) > 30
    if subsampling == "420":
        assert len(out) < len(ops.run(data, "jpeg:quality=80")[0])  # smaller than full chroma
