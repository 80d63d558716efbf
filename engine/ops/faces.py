"""faces: learned face detection (BlazeFace, MediaPipe), boxes drawn and returned.

The reply's metadata gets ``faces``: a list, best first, of
``{"box": [x, y, w, h], "score": float, "keypoints": [[x, y] x 6]}`` in integer pixels of
the image as it is at this step (put geometry changes before ``faces`` if the boxes must
match the output), and ``faces_model`` ("short" or "full"). Keypoints, in order: right
eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion.

Models: ``full`` (full range, 192 px input, faces up to ~5 m: group photos, cameras; the
default) and ``short`` (128 px input, faces within ~2 m: selfies, portraits). Whatever
the image size, the model sees a letterboxed copy of it; results are mapped back. Faces
narrower than about 1/15 of the image's longer side are often missed (measured: 97 px
faces in 1020 px all found, 64 px ones a third, 48 px ones none); ``tiles=n`` also runs
the model on n x n overlapping crops, which finds faces about n times smaller.

``faces_haar`` keeps the old numpy Haar cascade (``haar.py``) as a documented fallback:
frontal faces only, no score (1.0) and no keypoints, about a hundred times slower.
"""
from __future__ import annotations

import cv2

from . import blazeface, litert
from .base import Param, register
from .haar import Cascade
from .imageutil import to_grey
from .transform import fill_value, parse_colour

MODELS = ("full", "short")
DEFAULT_MIN_SCORE = 0.6  # MediaPipe's full-range threshold; its 0.5 short-range one passes a cat's face
MAX_TILES = 4
MAX_FACES = 256  # keeps the reply header small (about 80 bytes a face)

# Haar fallback
DETECT_MAX_SIDE_PX = 640
WINDOW_PX = 24  # the cascade's detection window side
CACHE_KEY = ("haar", "frontalface_default")


def detection_params(*, tiles: int) -> list[Param]:
    """The detector's parameters (shared by faces and anonymize), with ``tiles`` as default."""
    return [
        Param("model", str, "full", choices=MODELS,
              help="full: faces up to ~5 m (group photos); short: faces within ~2 m (selfies, portraits)"),
        Param("min_score", float, DEFAULT_MIN_SCORE, min=0.05, max=1.0, help="lowest detection score kept (0-1)"),
        Param("max_faces", int, 64, min=1, max=MAX_FACES, help="at most this many faces, best first"),
        Param("tiles", int, tiles, min=1, max=MAX_TILES,
              help="1: the model sees the whole image; n > 1: also n x n overlapping crops, finding smaller "
                   "faces (group photos) for n^2 more inferences and a few more false hits"),
    ]


def anchors(ctx, spec: blazeface.Spec):
    return ctx.warm(("anchors", spec.model), lambda: blazeface.anchors(spec), keep=len(blazeface.SPECS))


def detect_faces(image, ctx, *, model: str, min_score: float, max_faces: int, tiles: int) -> list[dict]:
    """Faces in ``image`` as reply metadata (also stored in ``ctx.meta``)."""
    spec = blazeface.SPECS[model]
    found = blazeface.detect(litert.model(ctx, spec.model), spec, image, min_score=min_score,
                             max_faces=max_faces, anchor_xy=anchors(ctx, spec), tiles=tiles)
    h, w = image.shape[:2]
    faces = [f.as_meta(w, h) for f in found]
    faces = [f for f in faces if f["box"][2] > 0 and f["box"][3] > 0]
    ctx.meta["faces"] = faces
    ctx.meta["faces_model"] = model
    return faces


def draw_boxes(image, boxes, colour: str, thickness: int):
    if not boxes:
        return image
    image = image.copy()
    value = fill_value(image, parse_colour(colour))
    for x, y, bw, bh in boxes:
        cv2.rectangle(image, (x, y), (x + bw - 1, y + bh - 1), value, thickness)
    return image


def _check(params: dict) -> None:
    parse_colour(params["colour"])


DRAW_PARAMS = [
    Param("draw", bool, True, help="draw the boxes on the image"),
    Param("colour", str, "00ff00", format="hex_colour", help="box colour, hex RRGGBB"),
    Param("thickness", int, 2, min=1, max=50, help="box line width in px"),
]


def detection_bytes(w: int, h: int, channels: int) -> int:
    """What detecting holds beyond the model's own tensors: a crop or the image made BGR and
    resized (only a BGR input's crops are used in place)."""
    return 0 if channels == 3 else w * h * 3


@register("faces", help="detect faces (learned: MediaPipe BlazeFace); draw boxes; return boxes, scores "
                        "and 6 keypoints as 'faces'", check=_check, params=detection_params(tiles=1) + DRAW_PARAMS,
          learned=True, peak_bytes=lambda p, w, h, c: detection_bytes(w, h, c) + (w * h * c if p["draw"] else 0))
def faces(image, ctx, *, model, min_score, max_faces, tiles, draw, colour, thickness):
    found = detect_faces(image, ctx, model=model, min_score=min_score, max_faces=max_faces, tiles=tiles)
    return draw_boxes(image, [f["box"] for f in found], colour, thickness) if draw else image


def cascade(ctx) -> Cascade:
    """The frontal-face cascade, loaded once per process (about 0.1 s to parse)."""
    return ctx.warm(CACHE_KEY, Cascade.load, keep=1)


def _haar_bytes(params: dict, w: int, h: int, channels: int) -> int:
    """The grey copy, the copy boxes are drawn on, and the detector's work at its size."""
    shrink = max(1.0, max(h, w) / DETECT_MAX_SIDE_PX)
    fits = min(h, w) / shrink >= WINDOW_PX  # else no detection window fits: nothing is detected
    work = Cascade.work_bytes(round(w / shrink) * round(h / shrink)) if fits else 0
    return (0 if channels == 1 else w * h) + (w * h * channels if params["draw"] else 0) + work


@register("faces_haar", help="fallback: frontal faces with the old Haar cascade (no scores, no keypoints, slow)",
          check=_check, peak_bytes=_haar_bytes, params=[
              Param("scale_factor", float, 1.1, min=1.01, max=2.0, help="size step between detection scales"),
              Param("min_neighbors", int, 3, min=0, max=50, help="overlapping hits needed to keep a face"),
              Param("min_size", int, 30, min=24, max=4096, help="smallest face side in px of the input"),
              *DRAW_PARAMS,
          ])
def faces_haar(image, ctx, *, scale_factor, min_neighbors, min_size, draw, colour, thickness):
    grey = to_grey(image)
    h, w = grey.shape
    shrink = max(1.0, max(h, w) / DETECT_MAX_SIDE_PX)
    boxes: list = []
    if min(h, w) / shrink >= WINDOW_PX:  # else no detection window fits (e.g. a 1x20000 strip)
        if shrink > 1:
            grey = cv2.resize(grey, (round(w / shrink), round(h / shrink)), interpolation=cv2.INTER_AREA)
        found = cascade(ctx).detect(grey, scale_factor=scale_factor, min_neighbors=min_neighbors,
                                    min_size=max(24, round(min_size / shrink)))
        boxes = [[round(v * shrink) for v in box] for box in found]
    ctx.meta["faces"] = [{"box": b, "score": 1.0, "keypoints": []} for b in boxes]
    ctx.meta["faces_model"] = "haar"
    return draw_boxes(image, boxes, colour, thickness) if draw else image
