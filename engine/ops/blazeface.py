"""BlazeFace (MediaPipe face detection): anchors, box decoding, weighted NMS, letterboxing.

Everything here follows MediaPipe's published specification, not guesswork:

- graph options, from ``mediapipe/modules/face_detection/face_detection_short_range.pbtxt``
  and ``face_detection_full_range.pbtxt`` (tensor size, layers, strides, interpolated
  aspect ratio, scales, score threshold) and ``face_detection.pbtxt`` (SsdAnchorsCalculator:
  min_scale 0.1484375, max_scale 0.75, offsets 0.5, aspect ratio 1.0, fixed anchor size;
  TensorsToDetections: 16 coords, keypoints from offset 4, 6 keypoints, sigmoid scores
  clipped at 100, reverse output order (x, y, w, h); NMS: IoU 0.3, weighted);
- anchor generation as in ``ssd_anchors_calculator.cc`` and box decoding as in
  ``tensors_to_detections_calculator.cc`` (``DecodeBoxes``).

The image is letterboxed into the square input (keep aspect ratio, zero border, as
MediaPipe's ImageToTensorCalculator does) and results are mapped back to its pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .imageutil import to_bgr

NMS_IOU = 0.3
SCORE_CLIP = 100.0
TILE_OVERLAP = 0.25  # share of a tile's side shared with its neighbour (a face on a seam is whole in one)
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion


@dataclass(frozen=True)
class Spec:
    model: str          # litert model name
    size_px: int        # input tensor side
    strides: tuple[int, ...]
    interpolated_ratio: float
    default_min_score: float
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    offset: float = 0.5


SPECS = {
    "short": Spec("face_short", 128, (8, 16, 16, 16), 1.0, 0.5),
    "full": Spec("face_full", 192, (4,), 0.0, 0.6),
}


def anchors(spec: Spec) -> np.ndarray:
    """Anchor centres (N x 2, x then y, in [0, 1]); fixed anchor size means w = h = 1."""
    out = []
    layer = 0
    n = len(spec.strides)
    while layer < n:
        per_cell = 0
        last = layer
        while last < n and spec.strides[last] == spec.strides[layer]:
            per_cell += 1  # one aspect ratio (1.0)
            if spec.interpolated_ratio > 0:
                per_cell += 1
            last += 1
        stride = spec.strides[layer]
        rows = math.ceil(spec.size_px / stride)
        cols = math.ceil(spec.size_px / stride)
        ys, xs = np.meshgrid((np.arange(rows) + spec.offset) / rows, (np.arange(cols) + spec.offset) / cols,
                             indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))  # y, then x, then anchor: as MediaPipe
        layer = last
    return np.concatenate(out).astype(np.float32)


@dataclass
class Face:
    box: np.ndarray        # x0, y0, x1, y1 in pixels of the image
    keypoints: np.ndarray  # 6 x 2 in pixels
    score: float

    def as_meta(self, width: int, height: int) -> dict:
        x0, y0 = max(0, round(self.box[0])), max(0, round(self.box[1]))
        x1, y1 = min(width, round(self.box[2])), min(height, round(self.box[3]))
        kps = [[min(width - 1, max(0, round(x))), min(height - 1, max(0, round(y)))] for x, y in self.keypoints]
        return {"box": [x0, y0, max(0, x1 - x0), max(0, y1 - y0)], "score": round(float(self.score), 4),
                "keypoints": kps}


def letterbox(image: np.ndarray, size_px: int) -> tuple[np.ndarray, float, int, int]:
    """The image fitted into a size x size RGB float tensor in [-1, 1], zero (black)
    border; returns the tensor, the scale and the left/top padding in tensor pixels."""
    h, w = image.shape[:2]
    scale = size_px / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # Resized first, then made BGR: the same pixels, without a colour copy of a large image.
    small = to_bgr(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
    pad_x, pad_y = (size_px - nw) // 2, (size_px - nh) // 2
    canvas = np.zeros((size_px, size_px, 3), np.uint8)
    canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = small
    tensor = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) * (2 / 255.0) - 1.0
    return tensor[None], scale, pad_x, pad_y


def decode(spec: Spec, anchor_xy: np.ndarray, raw: np.ndarray, logits: np.ndarray,
           min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (x0, y0, x1, y1), keypoints (K x 6 x 2) in tensor-normalised units and
    scores, for the anchors scoring at least ``min_score``."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = np.nonzero(scores >= min_score)[0]
    raw, a = raw[keep].astype(np.float64), anchor_xy[keep]
    s = float(spec.size_px)  # x_scale = y_scale = w_scale = h_scale = tensor side
    cx, cy = raw[:, 0] / s + a[:, 0], raw[:, 1] / s + a[:, 1]
    w, h = raw[:, 2] / s, raw[:, 3] / s
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / s + a[:, None, :]
    return boxes, kps, scores[keep]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray,
                 max_faces: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: each cluster (IoU > NMS_IOU with its best
    box) becomes the score-weighted mean of its boxes and keypoints, with the best score."""
    order = np.argsort(-scores, kind="stable")
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        cluster = alive & (_iou(boxes[i], boxes) > NMS_IOU)
        cluster[i] = True
        members = np.nonzero(cluster)[0]
        alive[members] = False
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        points = (kps[members] * weights[:, :, None]).sum(0) / weights.sum()
        out.append((box, points, float(scores[i])))
        if len(out) >= max_faces:
            break
    return out


def _candidates(model, spec: Spec, image: np.ndarray, min_score: float,
                anchor_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, keypoints and scores above ``min_score`` in ``image``'s pixels, before NMS."""
    tensor, scale, pad_x, pad_y = letterbox(image, spec.size_px)
    raw, logits = model.run(tensor)
    boxes, kps, scores = decode(spec, anchor_xy, raw, logits, min_score)
    pad = np.array([pad_x, pad_y])
    boxes = (boxes * spec.size_px - np.tile(pad, 2)) / scale
    kps = (kps * spec.size_px - pad) / scale
    return boxes, kps, scores


def tile_origins(length_px: int, tiles: int, overlap: float = TILE_OVERLAP) -> tuple[int, list[int]]:
    """Tile side and start offsets covering ``length_px`` with ``tiles`` overlapping tiles."""
    if tiles <= 1:
        return length_px, [0]
    side = math.ceil(length_px / (tiles - (tiles - 1) * overlap))
    step = (length_px - side) / (tiles - 1)
    return side, [round(i * step) for i in range(tiles)]


def detect(model, spec: Spec, image: np.ndarray, *, min_score: float, max_faces: int,
           anchor_xy: np.ndarray, tiles: int = 1) -> list[Face]:
    """Faces in ``image`` (any layout), best first, in its pixel coordinates.

    The model always sees the whole image; with ``tiles`` > 1 it also sees each of
    tiles x tiles overlapping crops (more invokes, smaller faces found), and the
    detections of every run are merged by one weighted NMS."""
    found = [_candidates(model, spec, image, min_score, anchor_xy)]
    if tiles > 1:
        h, w = image.shape[:2]
        tile_w, xs = tile_origins(w, tiles)
        tile_h, ys = tile_origins(h, tiles)
        for y in ys:
            for x in xs:
                boxes, kps, scores = _candidates(model, spec, image[y:y + tile_h, x:x + tile_w], min_score,
                                                 anchor_xy)
                found.append((boxes + [x, y, x, y], kps + [x, y], scores))
    boxes, kps, scores = (np.concatenate(parts) for parts in zip(*found))
    return [Face(box, points, score) for box, points, score in weighted_nms(boxes, kps, scores, max_faces)]
