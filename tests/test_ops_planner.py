"""The planner makes chains cheaper without changing their results beyond a stated
threshold: run(..., plan=True) against run(..., plan=False) on the sample photographs.

Stated thresholds:
- planned and unplanned images agree with PSNR >= 30 dB and SSIM >= 0.95 (grey decode
  alone: >= 50 dB; table fusion and no-op skipping: bit-exact);
- gradient outputs (sobel, laplacian), which amplify the decoders' small differences:
  PSNR >= 25 dB and SSIM >= 0.95;
- black-and-white outputs (edge, threshold) differ in at most 2% of their pixels.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from ops_helpers import psnr, sample_bytes, ssim

from engine import ops
from engine.ops import codec
from engine.ops.planner import plan

pytestmark = pytest.mark.timeout(60)

MIN_PSNR_DB, MIN_GRADIENT_PSNR_DB, MIN_SSIM, MAX_BINARY_DIFF = 30.0, 25.0, 0.95, 0.02


def both(name: str, pipeline: str):
    data = sample_bytes(name)
    planned, pmeta = ops.run(data, pipeline + "|png")
    naive, nmeta = ops.run(data, pipeline + "|png", plan=False)
    dec = lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)  # noqa: E731
    return dec(planned), dec(naive), pmeta, nmeta


@pytest.mark.parametrize("name, pipeline, note", [
    ("astronaut.jpg", "grayscale", "decoded straight to grey"),
    ("rocket.jpg", "crop:x=20,y=20,width=400,height=300|grayscale|blur", "decoded straight to grey"),
    ("retina.jpg", "resize:width=512", "JPEG decoded scaled, to at least 512x512"),
    ("retina.jpg", "thumbnail:size=128,square=true", "JPEG decoded scaled, to at least 128x128"),
    ("coffee.jpg", "resize:width=120,height=120,mode=fill|sharpen", "JPEG decoded scaled, to at least 180x120"),
    ("hubble_deep_field.jpg", "resize:width=300,height=100,mode=exact|sepia", "JPEG decoded scaled"),
])
def test_planned_chains_agree_with_unplanned(name, pipeline, note):
    planned, naive, pmeta, nmeta = both(name, pipeline)
    assert any(n.startswith(note) for n in pmeta["plan"]) and "plan" not in nmeta
    assert planned.shape == naive.shape
    assert psnr(planned, naive) >= MIN_PSNR_DB and ssim(planned, naive) >= MIN_SSIM


@pytest.mark.parametrize("pipeline", ["resize:width=200|sobel", "resize:width=300|laplacian"])
def test_planned_gradient_chains_agree_with_unplanned(pipeline):
    planned, naive, pmeta, _ = both("coffee.jpg", pipeline)
    assert "decoded straight to grey" in pmeta["plan"] and planned.shape == naive.shape
    assert psnr(planned, naive) >= MIN_GRADIENT_PSNR_DB and ssim(planned, naive) >= MIN_SSIM


def test_grey_decode_alone_is_nearly_exact():
    planned, naive, _, _ = both("astronaut.jpg", "grayscale")
    assert psnr(planned, naive) >= 50


@pytest.mark.parametrize("name, pipeline", [
    ("astronaut.jpg", "edge"), ("retina.jpg", "resize:width=256|edge"),
    ("retina.jpg", "flip|resize:height=300|grayscale|threshold:method=otsu"),
])
def test_planned_black_and_white_outputs_agree(name, pipeline):
    planned, naive, _, _ = both(name, pipeline)
    assert planned.shape == naive.shape and np.mean(planned != naive) <= MAX_BINARY_DIFF


def test_table_steps_fuse_into_one_pass_with_identical_results():
    planned, naive, pmeta, nmeta = both("coffee.jpg", "invert|gamma:gamma=2|brightness:brightness=10,contrast=1.2|blur")
    assert np.array_equal(planned, naive)
    assert [name for name, _ in pmeta["op_ms"]][:2] == ["lut(invert+gamma+brightness)", "blur"]
    assert len(nmeta["op_ms"]) == 5


def test_no_op_steps_are_skipped_with_identical_results():
    planned, naive, pmeta, _ = both("coffee.jpg", "gamma|brightness|rotate:angle=360|sharpen:amount=0|flip")
    assert np.array_equal(planned, naive)
    assert pmeta["plan"] == ["skipped 4 no-op step(s)"]
    assert [name for name, _ in pmeta["op_ms"]] == ["flip", "png"]


def test_dct_scaling_honours_exif_orientation():
    header = codec.Header("jpeg", 4000, 1000, orientation=6)  # displayed 1000 wide, 4000 high
    chosen = plan(ops.parse("resize:height=500"), header)
    assert chosen.min_size == (125, 500)
    assert plan(ops.parse("resize:height=500"), codec.Header("png", 4000, 1000)).min_size is None


def test_no_dct_scaling_below_2x_or_after_a_colour_step():
    header = codec.Header("jpeg", 1000, 1000)
    assert plan(ops.parse("resize:width=600"), header).min_size is None
    assert plan(ops.parse("blur|resize:width=100"), header).min_size is None
    assert plan(ops.parse("resize:width=100"), header).min_size == (100, 100)


def test_grey_decode_only_when_colour_is_dropped_before_it_is_used():
    header = codec.Header("jpeg", 100, 100)
    assert plan(ops.parse("flip|crop:x=1|edge"), header).grey
    assert not plan(ops.parse("sepia|grayscale"), header).grey
    assert not plan(ops.parse("grayscale"), codec.Header("png", 100, 100)).grey  # PNG stays bit-exact


def test_warm_state_is_kept_in_the_per_process_cache():
    cache: dict = {}
    data = sample_bytes("coins.jpg")
    ops.run(data, "faces_haar|gamma:gamma=1.5|clahe|erode:size=5", cache=cache)
    first = dict(cache)
    assert any("haar" in str(k) for k in first) and any("lut" in str(k) for k in first)
    assert any("clahe" in str(k) for k in first) and any("kernel" in str(k) for k in first)
    ops.run(data, "faces_haar|gamma:gamma=1.5|clahe|erode:size=5", cache=cache)
    assert all(cache[k] is v for k, v in first.items())  # reused, not rebuilt


def test_dct_scaled_decode_of_a_turned_jpeg_agrees_with_unplanned():
    import struct

    import simplejpeg
    image = cv2.imdecode(np.frombuffer(sample_bytes("hubble_deep_field.jpg"), np.uint8), cv2.IMREAD_COLOR)
    plain = simplejpeg.encode_jpeg(image, 90, colorspace="BGR")  # 1000 x 872 stored
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    data = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + plain[2:]
    planned, pmeta = ops.run(data, "resize:width=200|png")
    naive, nmeta = ops.run(data, "resize:width=200|png", plan=False)
    assert any(n.startswith("JPEG decoded scaled") for n in pmeta["plan"])
    assert (pmeta["width"], pmeta["height"]) == (nmeta["width"], nmeta["height"]) == (200, 229)
    dec = lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)  # noqa: E731
    assert psnr(dec(planned), dec(naive)) >= MIN_PSNR_DB and ssim(dec(planned), dec(naive)) >= MIN_SSIM


def test_warm_state_stays_bounded_whatever_the_parameters():
    cache: dict = {}
    data = sample_bytes("coins.png")
    ops.run(data, "faces_haar:draw=false", cache=cache)
    cascade = cache[("haar", "frontalface_default")]
    for i in range(300):
        shape = ("rect", "ellipse", "cross")[i % 3]
        ops.run(data, f"gamma:gamma={1 + i / 100}|erode:size={2 + i % 50},shape={shape}", cache=cache)
    kinds = [k[0] for k in cache]
    assert kinds.count("lut") <= 256 and kinds.count("kernel") <= 64
    ops.run(data, "faces_haar:draw=false", cache=cache)
    assert cache[("haar", "frontalface_default")] is cascade




def test_a_chain_of_no_ops_hands_the_input_back_without_decoding():
    data = sample_bytes("rocket.jpg")
    out, meta = ops.run(data, "noop|median:size=1|noop")
    assert out == data
    assert (meta["width"], meta["height"], meta["decode_ms"]) == (640, 427, 0.0)
    reencoded, meta = ops.run(data, "noop|jpeg:quality=50")  # a format step is work to do
    assert reencoded != data and meta["format"] == "jpeg"
    unplanned, _ = ops.run(data, "noop", plan=False)
    assert psnr(codec.decode(unplanned)[0], codec.decode(data)[0]) > 35
