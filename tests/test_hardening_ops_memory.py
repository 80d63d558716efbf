"""Every operation's memory is bounded before it allocates (issue 24, item 1).

One real worker with one pool process and a small budget (--memory-budget-mb) runs every
registered operation (a new one is covered without editing this file) on adversarial
shapes: a 12000 x 1 and a 1 x 12000 strip with each parameter at its largest (or each of
its choices), and a large image (grey, and with alpha) with the defaults. Each task must
succeed or be refused as a user error (image_too_large, bad_image, bad_parameter), never
``internal``, and the pool process's peak RSS during it (its high-water mark, reset before
each task) must grow by no more than the budget. glibc is told to give freed buffers back
at once (MALLOC_MMAP_THRESHOLD_), so the RSS before each task is what is really held.

Before the fix a 12000 x 1 image through ``watermark:width=1`` took 2.3 GB, a 1 x 65535
mark on a 100 x 100 image 4.4 GB and ``segmentation:k=16`` a 64M x 16 float plane.
"""
from __future__ import annotations

import base64
import os

import cv2
import numpy as np
import pytest
from cluster_helpers import Cluster
from ops_helpers import png
from rss_helpers import pool_process, task_peak

from engine.errors import ImageTooLarge, TaskError
from engine.ops.base import REGISTRY

pytestmark = pytest.mark.timeout(300)

BUDGET_MB = 48
LARGE = (800, 600)  # large for a 48 MiB budget, small enough for denoise to take a second
USER_ERRORS = {"image_too_large", "bad_image", "bad_parameter"}
TEST_ONLY = {"sleep", "crash", "hang"}


def mark(width: int, height: int) -> str:
    return base64.b64encode(png(np.full((height, width, 3), 200, np.uint8))).decode()


REQUIRED = {"text": {"text": "W" * 200}, "watermark": {"mark": mark(8, 8)}, "resize": {"width": 64}}


def variants(op) -> list[dict]:
    """The defaults, then each parameter at its largest, each of its choices, each boolean."""
    out = [{}]
    for p in op.params:
        if p.choices:
            out += [{p.name: v} for v in p.choices]
        elif p.type is bool:
            out += [{p.name: not p.default}]
        elif p.max is not None:
            out += [{p.name: p.type(p.max)}]
    return [{**REQUIRED.get(op.name, {}), **v} for v in out]


def noise(shape: tuple[int, ...]) -> bytes:
    return png(np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8))


def gradient(width: int, height: int, channels: int) -> bytes:
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 255 // (width + height)
    planes = [ramp, ramp[::-1], ramp[:, ::-1], np.full_like(ramp, 200)][:channels]
    return png(np.dstack(planes).astype(np.uint8).squeeze())


@pytest.fixture(scope="module")
def pool():
    """A client of a broker whose only worker has one pool process (its pid) with the small budget."""
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # every image-sized buffer is its own mapping, freed at once
    cluster = Cluster(local_workers=0).start_broker(wait_slots=0)
    try:
        worker = cluster.add_worker(1, "--memory-budget-mb", str(BUDGET_MB))
        cluster.wait_ready(2)
        with cluster.client(timeout_s=60) as client:
            yield client, pool_process(worker.pid).pid
    finally:
        if saved is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved
        cluster.stop()


def run_all(pool, data: bytes, tasks: list[tuple[str, dict]]) -> tuple[list[str], int]:
    """Each (operation, parameters) on ``data``; the breaches of the rules, and how many succeeded."""
    client, pid = pool
    breaches, done = [], 0
    for name, params in tasks:
        outcome, before, peak = task_peak(client, pid, data, [{"op": name, "params": params}, {"op": "json"}])
        grew_mib = (peak - before) / 2**20
        what = f"{name} {str(params)[:80]}: {grew_mib:.1f} MiB"
        if isinstance(outcome, Exception):
            if not (isinstance(outcome, TaskError) and outcome.code in USER_ERRORS):
                breaches.append(f"{what}, answered {type(outcome).__name__} {outcome}")
        else:
            done += 1
        if grew_mib > BUDGET_MB:
            breaches.append(f"{what}, over the {BUDGET_MB} MiB budget ({outcome!r:.120})")
    return breaches, done


def operations() -> list:
    return [op for name, op in sorted(REGISTRY.items()) if name not in TEST_ONLY]


@pytest.mark.parametrize("shape", [(1, 12000, 3), (12000, 1, 4)], ids=["12000x1", "1x12000"])
def test_every_operation_on_a_strip_with_its_largest_parameters_stays_within_the_budget(pool, shape):
    tasks = [(op.name, params) for op in operations() for params in variants(op)]
    breaches, done = run_all(pool, noise(shape), tasks)
    assert not breaches, "\n".join(breaches)
    assert done >= len(tasks) // 2, (done, len(tasks))  # most of them run: the budget is not a blanket refusal


@pytest.mark.parametrize("channels", [1, 4])
def test_every_operation_on_a_large_image_stays_within_the_budget(pool, channels):
    tasks = [(op.name, REQUIRED.get(op.name, {})) for op in operations()]
    breaches, done = run_all(pool, gradient(*LARGE, channels), tasks)
    assert not breaches, "\n".join(breaches)
    assert done >= len(tasks) // 2, (done, len(tasks))


def one(pool, data: bytes, name: str, params: dict) -> float:
    """Run one step; asserts it succeeded; returns what the pool process grew by, in MiB."""
    client, pid = pool
    outcome, before, peak = task_peak(client, pid, data, [{"op": name, "params": params}, {"op": "json"}])
    assert not isinstance(outcome, Exception), outcome
    grew_mib = (peak - before) / 2**20
    print(f"FIGURES {name} {str(params)[:60]}: pool process grew {grew_mib:.1f} MiB (budget {BUDGET_MB} MiB)")
    return grew_mib


def test_watermark_as_wide_as_a_12000x1_image_is_bounded(pool):
    assert one(pool, noise((1, 12000, 3)), "watermark", {"mark": mark(8, 8), "width": 1.0}) <= BUDGET_MB


def test_a_1x65535_mark_on_a_small_image_is_bounded(pool):
    params = {"mark": mark(1, 65535), "width": 1.0, "position": "top-left"}
    assert one(pool, noise((100, 100, 3)), "watermark", params) <= BUDGET_MB


def test_segmentation_with_16_clusters_on_a_large_image_is_bounded(pool):
    # 1 MP: the 16 float scores per pixel alone were 64 MB
    assert one(pool, gradient(1000, 1000, 3), "segmentation", {"k": 16}) <= BUDGET_MB


def test_a_step_over_the_budget_is_refused_naming_it_before_it_allocates(pool):
    client, pid = pool
    side = 3500  # a JPEG decodes in place: 36.75 MB fits the budget, with hsv's output it does not
    data = cv2.imencode(".jpg", np.full((side, side, 3), 90, np.uint8))[1].tobytes()
    outcome, before, peak = task_peak(client, pid, data, "hsv:hue=90|json")
    assert isinstance(outcome, ImageTooLarge), outcome
    assert "step 1 (hsv) on a 3500x3500 image" in outcome.message, outcome.message
    assert f"budget per task is {BUDGET_MB} MiB" in outcome.message and "--memory-budget-mb" in outcome.message
    assert peak - before < side * side * 3 + 8 * 2**20  # the decode, not the step's output


def test_an_image_whose_decode_is_over_the_budget_is_refused_before_decoding(pool):
    client, pid = pool
    data = png(np.zeros((5000, 5000, 3), np.uint8))  # 75 MB decoded
    outcome, before, peak = task_peak(client, pid, data, "flip|json")
    assert isinstance(outcome, ImageTooLarge), outcome
    assert "decoding this 5000x5000 PNG image" in outcome.message, outcome.message
    assert peak - before < 8 * 2**20
