"""Hostile inputs: the header reader agrees with the decoder about what decoding will
cost, and refuses (bad_image / image_too_large, with the reason) whatever it cannot be
sure of, before anything is decoded. Every file here is built at test time."""
from __future__ import annotations

import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
import simplejpeg
from ops_helpers import jpeg_segments, progressive_jpeg_with_scans, sample, tiff, tiff_page, tiff_shared_strips

from engine import ops
from engine.errors import ImageError, ImageTooLarge
from engine.ops import codec

pytestmark = pytest.mark.timeout(60)

PIXELS = bytes(range(256)) * 16  # 64 x 64 grey


@pytest.fixture(scope="module")
def cat():
    return sample("chelsea.jpg", max_side=120)


def encoded(image, ext, *params) -> bytes:
    ok, out = cv2.imencode(ext, image, list(params))
    assert ok
    return out.tobytes()


def grey_tiff(entries_for, *, end="<") -> bytes:
    """A one-page TIFF whose 64x64 grey pixels follow the directory."""
    offset = len(tiff([entries_for(0)], end=end))
    return tiff([entries_for(offset)], end=end, tail=PIXELS)


def agrees(data: bytes) -> tuple[codec.Header, np.ndarray]:
    """The header's size is the decoded size, and its byte estimate covers the decode."""
    header = codec.probe(data)
    image, _ = codec.decode(data, header=header)
    assert header.display_size == (image.shape[1], image.shape[0])
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert header.decoded_bytes >= raw.nbytes
    return header, image


def test_every_accepted_format_has_a_header_that_agrees_with_the_decoder(cat):
    bgra = np.dstack([cat, np.full(cat.shape[:2], 200, np.uint8)])
    grey = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
    inputs = [encoded(cat, ".png"), encoded(bgra, ".png"), encoded(grey.astype(np.uint16) * 257, ".png"),
              encoded(cat.astype(np.uint16) * 257, ".png"), encoded(cat, ".webp", cv2.IMWRITE_WEBP_QUALITY, 80),
              encoded(bgra, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101), encoded(cat, ".bmp"), encoded(bgra, ".bmp"),
              encoded(cat, ".tiff"), encoded(bgra, ".tiff"), encoded(cat.astype(np.uint16) * 257, ".tiff"),
              encoded(cat.astype(np.float32) / 255, ".tiff"), encoded(cat, ".jpg"),
              encoded(cat, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1), encoded(grey, ".jpg")]
    for data in inputs:
        agrees(data)


@pytest.mark.parametrize("end", ["<", ">"])
def test_tiff_header_agrees_with_the_decoder_in_either_byte_order(end):
    _header, image = agrees(grey_tiff(lambda at: tiff_page(64, 64, at), end=end))
    assert image.shape == (64, 64)


@pytest.mark.parametrize("kind", [1, 8, 9])  # BYTE, SSHORT, SLONG: libtiff reads them all
def test_tiff_size_of_any_integer_type_is_read_like_libtiff(kind):
    def entries(at):
        page = tiff_page(64, 64, at)
        page[0] = (256, kind, 1, 64)
        return page
    header, _image = agrees(grey_tiff(entries))
    assert (header.width, header.height) == (64, 64)


@pytest.mark.parametrize("end", ["<", ">"])
def test_tiff_with_a_repeated_width_is_refused(end):
    """libtiff keeps the first of two ImageWidth tags: a reader keeping the last would
    check a small size while the decoder allocates the large one."""
    def entries(at):
        page = tiff_page(64, 64, at)
        return page[:1] + [(256, 4, 1, 32)] + page[1:]
    data = grey_tiff(entries, end=end)
    with pytest.raises(ImageError, match=r"ImageWidth.*more than once"):
        ops.run(data, "png")


def test_tiff_with_a_size_of_an_unchecked_type_is_refused():
    def entries(at):
        page = tiff_page(64, 64, at)
        page[1] = (257, 5, 1, 0)  # RATIONAL
        return page
    with pytest.raises(ImageError, match=r"ImageLength.*type 5"):
        ops.run(grey_tiff(entries), "png")


def test_multi_page_tiff_is_refused():
    def pages(at):
        return [tiff_page(16, 16, at), tiff_page(64, 64, at)]
    data = tiff(pages(len(tiff(pages(0)))), tail=PIXELS)
    with pytest.raises(ImageError, match=r"multi-page"):
        ops.run(data, "png")


def test_bigtiff_and_jpeg_in_tiff_are_refused_with_the_reason():
    with pytest.raises(ImageError, match=r"BigTIFF"):
        ops.run(b"II+\x00\x08\x00\x00\x00" + b"\0" * 32, "png")

    def entries(at):
        page = tiff_page(64, 64, at)
        page[3] = (259, 3, 1, 7)
        return page
    with pytest.raises(ImageError, match=r"compression 7.*accepted"):
        ops.run(grey_tiff(entries), "png")


def test_tiff_under_the_pixel_limit_but_gigabytes_decoded_is_refused_from_the_header():
    """64 KB of Deflate strips that all point at one row: 8000x8000 float64 RGBA, 2 GB."""
    data = tiff_shared_strips(8000, 8000)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=r"decode to 2048.0 MB.*limit is 536.9 MB"):
            ops.run(data, "png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_decoded_bytes_count_channels_and_16_bit_samples():
    def png_header(depth, colour_type):
        ihdr = struct.pack(">IIBBBBB", 6000, 6000, depth, colour_type, 0, 0, 0)
        body = b"IHDR" + ihdr
        return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))
    limits = ops.Limits(max_decoded_bytes=200_000_000)
    with pytest.raises(ImageTooLarge, match=r"16-bit"):  # 36 MP x 4 channels x 2 bytes = 288 MB
        codec.probe(png_header(16, 6), limits)
    assert codec.probe(png_header(8, 6), limits).decoded_bytes == 144_000_000


def test_progressive_jpeg_with_hundreds_of_scans_is_refused_before_decoding():
    data = progressive_jpeg_with_scans(150)
    assert len(data) < 20_000
    with pytest.raises(ImageError, match=r"more than 100 scans"):
        codec.probe(data)
    with pytest.raises(ImageError, match=r"scans"):
        ops.run(data, "png")


def test_scans_after_garbage_between_markers_are_still_counted():
    """libjpeg skips stray bytes before a marker, so the count must not stop at them."""
    data = progressive_jpeg_with_scans(0)
    start, _, end = [s for s in jpeg_segments(data) if s[1] == 0xDA][-1]
    bomb = data[:-2] + b"\x00\x17" + data[start:end] * 150 + data[-2:]
    with pytest.raises(ImageError, match=r"scans"):
        codec.probe(bomb)


def test_real_progressive_jpegs_are_accepted(cat):
    data = encoded(cat, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert codec.probe(data).decoded_bytes > cat.nbytes  # the coefficient buffer is counted
    _out, meta = ops.run(data, "png")
    assert (meta["width"], meta["height"]) == (cat.shape[1], cat.shape[0])


def test_jpeg_with_a_second_frame_header_is_refused(cat):
    data = simplejpeg.encode_jpeg(cat, 90, colorspace="BGR")
    start, _, end = next(s for s in jpeg_segments(data) if s[1] == 0xC0)
    sof = bytearray(data[start:end])
    sof[5:9] = struct.pack(">HH", 8000, 8000)
    scan_end = next(s for s in jpeg_segments(data) if s[1] == 0xDA)[2]
    second = data[:scan_end] + bytes(sof) + data[scan_end:]
    with pytest.raises(ImageError, match=r"2 frame headers"):
        ops.run(second, "png")


def test_animated_png_and_webp_are_refused(cat):
    animation = cv2.Animation()
    animation.frames = [cat, 255 - cat]
    animation.durations = [100, 100]
    for ext in (".png", ".webp"):
        ok, data = cv2.imencodeanimation(ext, animation)
        assert ok
        with pytest.raises(ImageError, match=r"animated"):
            ops.run(data.tobytes(), "png")


def test_unrecognised_input_names_the_accepted_formats():
    with pytest.raises(ImageError, match=r"accepted: JPEG, PNG, WebP.*TIFF"):
        ops.run(b"GIF89a" + b"\0" * 40, "png")


def test_a_header_cut_off_anywhere_is_a_bad_image_never_an_internal_error():
    from pathlib import Path

    from engine.errors import TaskError
    from engine.ops import codec

    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (40, 60, 3), np.uint8)
    samples = [(Path(__file__).parent / "data" / "camera.jpg").read_bytes()] + [cv2.imencode(ext, image)[1].tobytes()
                                                      for ext in (".png", ".webp", ".bmp", ".tiff")]
    for data in samples:
        for cut in range(1, min(len(data), 1500)):
            try:
                codec.probe(data[:cut])
            except TaskError:
                pass  # refused, with a code a client can act on
