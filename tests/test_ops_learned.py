"""The learned operations (faces, anonymize, background, json) with the bundled models on
real photographs: boxes against hand-noted positions, nothing on photographs without
people, changes confined to the faces, masks that cover the person."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from ops_helpers import apply, png, psnr, sample, sample_bytes, ssim

from engine import ops
from engine.errors import BadParameter
from engine.ops import litert

pytestmark = pytest.mark.timeout(60)

MIN_IOU = 0.5
# Faces noted by hand (x, y, w, h: forehead to chin, ear or cheek to cheek) in the corpus photographs.
HAND_FACES = {
    "astronaut.jpg": [178, 75, 97, 105],  # Eileen Collins, frontal
    "camera.jpg": [195, 118, 70, 87],     # the cameraman, three-quarter profile, grey photograph
}
NO_PEOPLE = ["chelsea.jpg", "coffee.jpg", "coins.jpg", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


@pytest.fixture(scope="module")
def cache() -> dict:
    warm: dict = {}
    ops.warm_up(warm)
    return warm


@pytest.fixture(scope="module")
def astronaut():
    return sample("astronaut.jpg")


@pytest.mark.parametrize("model", ["full", "short"])
@pytest.mark.parametrize("name", sorted(HAND_FACES))
def test_faces_finds_the_hand_noted_face(cache, name, model):
    image = sample(name, grey=name == "camera.jpg")
    _, meta = apply(image, f"faces:draw=false,model={model}", cache=cache)
    assert meta["faces_model"] == model
    assert len(meta["faces"]) == 1, meta["faces"]
    assert iou(meta["faces"][0]["box"], HAND_FACES[name]) >= MIN_IOU, meta["faces"]


def test_faces_metadata_has_the_documented_shape(cache, astronaut):
    _, meta = apply(astronaut, "faces:draw=false", cache=cache)
    (face,) = meta["faces"]
    assert set(face) == {"box", "score", "keypoints"}
    assert len(face["box"]) == 4 and all(type(v) is int for v in face["box"])
    assert isinstance(face["score"], float) and 0.6 <= face["score"] <= 1.0
    assert len(face["keypoints"]) == 6 and all(len(p) == 2 and all(type(v) is int for v in p)
                                               for p in face["keypoints"])
    x, y, w, h = face["box"]
    right_eye, left_eye, nose, mouth = face["keypoints"][:4]
    assert all(x <= px < x + w and y <= py < y + h for px, py in (right_eye, left_eye, nose, mouth))
    assert right_eye[0] < left_eye[0] and max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    json.dumps(meta)  # travels as JSON / msgpack


@pytest.mark.parametrize("pipeline", ["faces:draw=false", "faces:draw=false,model=short",
                                      "anonymize", "faces:draw=false,tiles=2"])
@pytest.mark.parametrize("name", NO_PEOPLE)
def test_no_faces_on_photographs_without_people(cache, name, pipeline):
    image = sample(name)
    out, meta = apply(image, pipeline, cache=cache)
    assert meta["faces"] == []
    assert np.array_equal(out, image)  # nothing drawn, nothing hidden


def test_faces_draws_its_boxes(cache, astronaut):
    out, meta = apply(astronaut, "faces:colour=ff0000,thickness=2", cache=cache)
    x, y, w, h = meta["faces"][0]["box"]
    assert (out[y, x + w // 2] == [0, 0, 255]).all() and (out[y + h - 1, x] == [0, 0, 255]).all()
    inside = np.s_[y + 3:y + h - 3, x + 3:x + w - 3]
    assert np.array_equal(out[inside], astronaut[inside])


def test_tiles_find_the_small_faces_of_a_group(cache, astronaut):
    tile = cv2.resize(astronaut, (340, 340), interpolation=cv2.INTER_AREA)
    group = np.vstack([np.hstack([tile] * 3)] * 3)  # nine faces about 64 px wide in 1020 x 1020
    x, y, w, h = (round(v * 340 / 512) for v in HAND_FACES["astronaut.jpg"])
    expected = [[i * 340 + x, j * 340 + y, w, h] for j in range(3) for i in range(3)]
    _, whole = apply(group, "faces:draw=false", cache=cache)
    _, tiled = apply(group, "faces:draw=false,tiles=3", cache=cache)
    assert len(tiled["faces"]) == 9 > len(whole["faces"])
    for box in expected:
        assert max(iou(box, f["box"]) for f in tiled["faces"]) >= MIN_IOU, (box, tiled["faces"])


@pytest.mark.parametrize("side_px", [1920, 3840])
def test_large_images_map_boxes_back_to_their_pixels(cache, astronaut, side_px):
    big = cv2.resize(astronaut, (side_px, side_px), interpolation=cv2.INTER_CUBIC)
    _, meta = ops.run(cv2.imencode(".jpg", big)[1].tobytes(), "faces:draw=false|json", cache=cache)
    hand = [round(v * side_px / 512) for v in HAND_FACES["astronaut.jpg"]]
    assert len(meta["faces"]) == 1 and iou(meta["faces"][0]["box"], hand) >= MIN_IOU


def test_planned_downscaled_decode_finds_the_same_face(cache):
    data = sample_bytes("astronaut.jpg")
    _planned, pmeta = ops.run(data, "resize:width=200|faces:draw=false|json", cache=cache)
    _naive, nmeta = ops.run(data, "resize:width=200|faces:draw=false|json", cache=cache, plan=False)
    assert any(n.startswith("JPEG decoded scaled") for n in pmeta["plan"])
    assert len(pmeta["faces"]) == len(nmeta["faces"]) == 1
    assert iou(pmeta["faces"][0]["box"], nmeta["faces"][0]["box"]) >= 0.9
    hand = [round(v * 200 / 512) for v in HAND_FACES["astronaut.jpg"]]
    assert iou(pmeta["faces"][0]["box"], hand) >= MIN_IOU


def _outside(image, box, margin):
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    mask = np.ones(image.shape[:2], bool)
    mask[max(0, y - dy):y + h + dy, max(0, x - dx):x + w + dx] = False
    return mask


@pytest.mark.parametrize("method", ["blur", "pixelate", "fill"])
def test_anonymize_hides_the_face_and_leaves_the_rest(cache, astronaut, method):
    out, meta = apply(astronaut, f"anonymize:method={method},margin=0.25", cache=cache)
    assert meta["anonymized"] == 1
    (face,) = meta["faces"]
    outside = _outside(astronaut, face["box"], 0.25)
    assert np.array_equal(out[outside], astronaut[outside])
    x, y, w, h = HAND_FACES["astronaut.jpg"]
    hand = np.s_[y:y + h, x:x + w]
    assert ssim(cv2.cvtColor(out[hand], cv2.COLOR_BGR2GRAY), cv2.cvtColor(astronaut[hand], cv2.COLOR_BGR2GRAY)) < 0.5
    assert ssim(out, astronaut) >= 0.8  # the image as a whole is still the same photograph
    _, again = apply(out, "faces:draw=false", cache=cache)
    assert again["faces"] == []  # the detector no longer sees a face


def test_anonymize_keeps_alpha_and_composes_with_other_steps(cache, astronaut):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)])
    out, meta = apply(rgba, "anonymize:method=fill,colour=ff00ff", cache=cache)
    assert out.shape[2] == 4 and (out[:, :, 3] == 200).all() and meta["anonymized"] == 1
    _data, meta = ops.run(sample_bytes("astronaut.jpg"), "resize:width=1280|anonymize|jpeg:quality=85", cache=cache)
    assert meta["format"] == "jpeg" and meta["width"] == 1280 and meta["anonymized"] == 1
    assert [name for name, _ in meta["op_ms"]] == ["resize", "anonymize", "jpeg"]


@pytest.fixture(scope="module")
def person_mask(cache, astronaut):
    out, meta = apply(astronaut, "background:mode=mask", cache=cache)
    assert out.ndim == 2 and out.shape == astronaut.shape[:2]
    return out, meta


def test_background_mask_covers_the_person(person_mask):
    mask, meta = person_mask
    x, y, w, h = HAND_FACES["astronaut.jpg"]
    assert (mask[y:y + h, x:x + w] >= 128).mean() >= 0.9  # the face
    assert (mask[300:500, 60:300] >= 128).mean() >= 0.9   # the suit
    assert (mask[0:60, 300:512] < 128).mean() >= 0.9      # the wall behind, top right
    assert (mask[0:200, 0:40] < 128).mean() >= 0.9        # the flag, top left
    assert 0.3 < meta["person_fraction"] < 0.8 and meta["person_score"] > 0.8
    assert meta["segmentation_model"] == "selfie_square"


def test_background_remove_puts_the_mask_in_alpha_and_switches_jpeg_to_png(cache, person_mask):
    data, meta = ops.run(sample_bytes("astronaut.jpg"), "background:mode=remove", cache=cache)
    assert meta["format"] == "png" and meta["channels"] == 4
    out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.abs(out[:, :, 3].astype(int) - person_mask[0]).max() <= 1
    _, meta = ops.run(sample_bytes("astronaut.jpg"), "background:mode=remove|webp", cache=cache)
    assert meta["format"] == "webp"  # a later format step still decides


def test_background_colour_and_blur_keep_the_person(cache, astronaut, person_mask):
    mask = person_mask[0]
    person, back = mask == 255, mask == 0
    out, _ = apply(astronaut, "background:mode=colour,colour=00ff00", cache=cache)
    assert (out[back] == [0, 255, 0]).all() and np.array_equal(out[person], astronaut[person])
    out, _ = apply(astronaut, "background:mode=blur,blur=8", cache=cache)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), sigmaX=8, borderType=cv2.BORDER_REPLICATE)
    assert np.array_equal(out[person], astronaut[person])
    assert psnr(out[back], blurred[back]) >= 45


def test_landscape_images_use_the_landscape_model(cache):
    _, meta = apply(sample("rocket.jpg"), "background:mode=mask", cache=cache)
    assert meta["segmentation_model"] == "selfie_landscape" and meta["person_fraction"] < 0.01


def test_json_step_returns_only_the_metadata(cache):
    data, meta = ops.run(sample_bytes("astronaut.jpg"), "faces|background:mode=mask|json", cache=cache)
    assert meta["format"] == "json"
    assert json.loads(data) == json.loads(json.dumps(meta))
    assert len(meta["faces"]) == 1 and "person_fraction" in meta


def test_learned_parameters_are_checked_before_decoding():
    for pipeline, words in [("faces:model=huge", "must be one of full, short"),
                            ("faces:min_score=2", "<= 1.0"), ("anonymize:method=erase", "blur, pixelate, fill"),
                            ("background:mode=cut", "remove, blur, colour, mask"),
                            ("background:colour=nope", "hex RRGGBB"), ("faces:tiles=9", "<= 4")]:
        with pytest.raises(BadParameter, match=words):
            ops.parse(pipeline)


def test_odd_shapes_find_nothing_and_do_not_fail(cache):
    for image in (np.zeros((1, 20000), np.uint8), np.zeros((3, 3, 3), np.uint8), np.zeros((5000, 2), np.uint8)):
        _, meta = ops.run(png(image), "faces|anonymize|background|png", cache=cache)
        assert meta["faces"] == []


def test_warm_up_loads_every_model_once_per_process():
    cache: dict = {}
    load_ms = ops.warm_up(cache)
    assert set(load_ms) == set(litert.MODEL_FILES) and all(ms > 0 for ms in load_ms.values())
    loaded = {k: v for k, v in cache.items() if k[0] == "litert"}
    assert len(loaded) == len(litert.MODEL_FILES)
    for pipeline in ("faces", "anonymize", "background", "background:mode=mask"):
        ops.run(sample_bytes("rocket.jpg"), pipeline, cache=cache)
        ops.run(sample_bytes("astronaut.jpg"), pipeline, cache=cache)
    assert {k: v for k, v in cache.items() if k[0] == "litert"} == loaded
    assert all(cache[k] is v for k, v in loaded.items())  # the tasks used the warm models, none reloaded
    assert all(ms < 1.0 for ms in ops.warm_up(cache).values())  # already warm: nothing to load


@pytest.mark.parametrize("sigma_px", [3.0, 12.0, 60.0])
def test_big_blur_matches_opencv_gaussian_blur(astronaut, sigma_px):
    from engine.ops import bigblur

    reference = cv2.GaussianBlur(astronaut, (0, 0), sigmaX=sigma_px, borderType=cv2.BORDER_REPLICATE)
    fast = bigblur.gaussian(astronaut, sigma_px)
    assert psnr(fast, reference) >= 40 and ssim(fast, reference) >= 0.99  # edges differ most at large sigma
