"""The learned operations through a real broker and worker processes: detections travel
in the reply metadata, and the ``json`` output step's reply carries the metadata as its
body (no image) through broker, worker and client."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from cluster_helpers import Cluster
from ops_helpers import sample_bytes

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def engine():
    cluster = Cluster(local_workers=1).start_broker()
    yield cluster
    cluster.stop()


def test_json_output_carries_the_detections_and_no_image(engine):
    with engine.client() as client:
        result = client.process(sample_bytes("astronaut.jpg"), "faces:draw=false|background:mode=mask|json")
    assert result.format == "json" and result.meta["faces_model"] == "full"
    body = json.loads(result.data)
    assert body["faces"] == result.meta["faces"] and len(body["faces"]) == 1
    assert body["person_fraction"] == result.meta["person_fraction"] > 0.3
    assert cv2.imdecode(np.frombuffer(result.data, np.uint8), cv2.IMREAD_UNCHANGED) is None  # not an image


def test_anonymize_through_the_engine_composes_with_resize_and_jpeg(engine):
    with engine.client() as client:
        results = list(client.map([sample_bytes("astronaut.jpg"), sample_bytes("chelsea.jpg")],
                                  "resize:width=1280|anonymize|jpeg:quality=85"))
    portrait, cat = results
    assert portrait.format == "jpeg" and portrait.width == 1280 and portrait.meta["anonymized"] == 1
    assert cat.meta["anonymized"] == 0 and cat.meta["faces"] == []
    image = cv2.imdecode(np.frombuffer(portrait.data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (1280, 1280)
    x, y, w, _h = portrait.meta["faces"][0]["box"]
    assert 350 < x < 550 and 100 < y < 300 and 180 < w < 320  # the face, in the 1280 px image's pixels
