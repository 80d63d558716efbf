"""A Haar cascade detector in numpy, for OpenCV builds without ``CascadeClassifier``.

OpenCV 5.0 moved ``CascadeClassifier`` out of the main package and its wheels no longer
ship ``cv2.data.haarcascades``. This module reads OpenCV's own cascade files (the
frontal-face one is shipped in ``data/``, gzipped, with its Intel licence inside) and
evaluates them the way OpenCV's ``detectMultiScale`` does: shrink the image by
``scale_factor`` per level, slide the 24x24 window (step 2 px, 1 px past 2x), normalise
by the window's standard deviation, reject windows stage by stage, then group the hits
(``groupRectangles`` with eps 0.2). Every stage is evaluated for all surviving windows
at once with numpy gathers on the integral image, so there is no per-pixel Python.
"""
from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DATA_DIR = Path(__file__).with_name("data")
FRONTAL_FACE = DATA_DIR / "haarcascade_frontalface_default.xml.gz"
GROUP_EPS = 0.2
MAX_RAW_HITS = 4000  # grouping compares every pair: beyond this, an even subsample is grouped
# Memory is bounded by evaluating windows, and comparing boxes, a block at a time: a stage
# gathers (windows x corners) doubles, and its corners and features are at most ~550 and ~210.
WINDOW_BLOCK = 1024
WINDOW_BYTES = 12_500  # per window of a block, in the largest stage
GROUP_BLOCK = 64  # boxes compared with all the others at once (float64 temporaries)


@dataclass(frozen=True)
class Stage:
    threshold: float
    rects: np.ndarray      # (F, 3, 4) x, y, w, h; unused third rects are zero-sized
    weights: np.ndarray    # (F, 3)
    node_thresholds: np.ndarray  # (F,)
    leaves: np.ndarray     # (F, 2) value below / at-or-above the node threshold
    corners: np.ndarray    # (U, 2) distinct window-relative (y, x) integral-image corners
    matrix: np.ndarray     # (U, F) coefficients: corner values @ matrix = feature values

    @classmethod
    def build(cls, threshold: float, rects: np.ndarray, weights: np.ndarray,
              node_thresholds: np.ndarray, leaves: np.ndarray) -> Stage:
        x, y, w, h = (rects[..., i] for i in range(4))
        ys = np.stack([y, y, y + h, y + h], axis=-1).ravel()   # tl, tr, bl, br of each rect
        xs = np.stack([x, x + w, x, x + w], axis=-1).ravel()
        coef = (weights[:, :, None] * np.array([1.0, -1.0, -1.0, 1.0])).ravel()
        corners, where = np.unique(np.stack([ys, xs], axis=1), axis=0, return_inverse=True)
        matrix = np.zeros((len(corners), len(weights)))
        np.add.at(matrix, (where.ravel(), np.repeat(np.arange(len(weights)), 12)), coef)
        return cls(threshold, rects, weights, node_thresholds, leaves, corners, matrix)


@dataclass(frozen=True)
class Cascade:
    width: int
    height: int
    stages: tuple[Stage, ...]

    @classmethod
    def load(cls, path: Path = FRONTAL_FACE) -> Cascade:
        """Parse an OpenCV (new-format, stump-based HAAR) cascade file, gzipped or not."""
        raw = path.read_bytes()
        root = ET.fromstring(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        node = root.find("cascade")
        if node is None or node.findtext("featureType", "").strip() != "HAAR":
            raise ValueError(f"{path.name}: not a new-format HAAR cascade")
        child, text = _reader(path.name)
        features = []
        for feat in child(node, "features"):
            if feat.findtext("tilted", "0").strip() != "0":
                raise ValueError(f"{path.name}: tilted features are not supported")
            rows = [[float(v) for v in (r.text or "").split()] for r in child(feat, "rects")]
            rows += [[0, 0, 0, 0, 0.0]] * (3 - len(rows))
            features.append(rows)
        table = np.array(features, dtype=np.float64)
        stages = []
        for st in child(node, "stages"):
            idx, thr, leaves = [], [], []
            for weak in child(st, "weakClassifiers"):
                left, right, fi, t = text(weak, "internalNodes").split()
                if (left, right) != ("0", "-1"):
                    raise ValueError(f"{path.name}: only stump (depth 1) cascades are supported")
                idx.append(int(fi))
                thr.append(float(t))
                leaves.append([float(v) for v in text(weak, "leafValues").split()])
            sel = table[idx]
            stages.append(Stage.build(float(text(st, "stageThreshold")), sel[:, :, :4].astype(np.int64),
                                      sel[:, :, 4].copy(), np.array(thr), np.array(leaves)))
        return cls(int(text(node, "width")), int(text(node, "height")), tuple(stages))

    @staticmethod
    def work_bytes(pixels: int) -> int:
        """The most ``detect`` holds for a grey image of ``pixels``: two float64 integral
        images, every window's start and its box (all levels: ~1.4x the first), a block
        of windows in a stage, and the grouping's pairwise matrix and block."""
        return (pixels * (16 + 2 * 8 + 2 * 32) + WINDOW_BLOCK * WINDOW_BYTES + MAX_RAW_HITS ** 2
                + GROUP_BLOCK * MAX_RAW_HITS * 8 * 6)

    def _windows_at(self, small: np.ndarray, step: int) -> np.ndarray:
        """Top-left (x, y) of the windows at this level that pass every stage."""
        sh, sw = small.shape
        total, squares = cv2.integral2(small, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        stride = sw + 1
        flat, flat_sq = total.ravel(), squares.ravel()
        ys, xs = np.mgrid[0:sh - self.height:step, 0:sw - self.width:step]
        starts = (ys * stride + xs).ravel()
        del ys, xs
        base = np.concatenate([self._passing(flat, flat_sq, stride, starts[i:i + WINDOW_BLOCK])
                               for i in range(0, len(starts), WINDOW_BLOCK)] or [starts])
        return np.stack([base % stride, base // stride], axis=1)

    def _passing(self, flat: np.ndarray, flat_sq: np.ndarray, stride: int, base: np.ndarray) -> np.ndarray:
        """The window starts of ``base`` (offsets in the integral image) that pass every stage."""
        # Variance normalisation over the window less a 1 px border, as OpenCV does.
        nw, nh = self.width - 2, self.height - 2
        corners = np.array([stride + 1, stride + 1 + nw, (nh + 1) * stride + 1, (nh + 1) * stride + 1 + nw])

        def box(values, b):
            v = values[b[:, None] + corners]
            return v[:, 3] - v[:, 1] - v[:, 2] + v[:, 0]

        area = nw * nh
        nf = area * box(flat_sq, base) - box(flat, base) ** 2
        keep = nf > (10.0 * area) ** 2  # OpenCV skips windows with a standard deviation <= 10
        base, norm = base[keep], 1.0 / np.sqrt(nf[keep])
        for st in self.stages:
            if not len(base):
                break
            offsets = st.corners[:, 0] * stride + st.corners[:, 1]
            feature = (flat[base[:, None] + offsets] @ st.matrix) * norm[:, None]
            score = np.where(feature < st.node_thresholds, st.leaves[:, 0], st.leaves[:, 1]).sum(axis=1)
            passed = score >= st.threshold
            base, norm = base[passed], norm[passed]
        return base

    def detect(self, grey: np.ndarray, *, scale_factor: float = 1.1, min_neighbors: int = 3,
               min_size: int = 30) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) found in a uint8 grey image, like ``detectMultiScale``."""
        h, w = grey.shape
        hits = []  # per level, an array of boxes (x, y, w, h)
        factor = 1.0
        while True:
            sw, sh = round(w / factor), round(h / factor)
            win = round(self.width * factor), round(self.height * factor)
            if sw <= self.width + 1 or sh <= self.height + 1:
                break
            if win[0] >= min_size and win[1] >= min_size:
                small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_LINEAR_EXACT)
                corners = np.rint(self._windows_at(small, 1 if factor > 2 else 2) * factor)
                hits.append(np.column_stack([corners, np.broadcast_to(win, corners.shape)]))
            factor *= scale_factor
        return group_rectangles(np.concatenate(hits) if hits else [], min_neighbors, GROUP_EPS)


def _reader(name: str):
    """``child(el, tag)`` and ``text(el, tag)`` for a cascade file: a missing element is a
    ValueError naming the file and the tag, not an AttributeError on None."""
    def child(el: ET.Element, tag: str) -> ET.Element:
        found = el.find(tag)
        if found is None:
            raise ValueError(f"{name}: no <{tag}> in <{el.tag}>")
        return found

    def text(el: ET.Element, tag: str) -> str:
        return child(el, tag).text or ""
    return child, text


def group_rectangles(rects: list | np.ndarray, threshold: int, eps: float) -> list[tuple[int, int, int, int]]:
    """Cluster similar boxes, keep clusters of more than ``threshold``, drop boxes nested
    in a stronger cluster (OpenCV's ``groupRectangles``)."""
    if not len(rects):
        return []
    r = np.array(rects, dtype=np.float64)
    if len(r) > MAX_RAW_HITS:
        r = r[np.linspace(0, len(r) - 1, MAX_RAW_HITS).astype(int)]
    x, y, w, h = r.T
    n = len(r)
    blocks = [slice(i, i + GROUP_BLOCK) for i in range(0, n, GROUP_BLOCK)]
    similar = np.empty((n, n), bool)
    for b in blocks:
        delta = eps * (np.minimum(w[b, None], w) + np.minimum(h[b, None], h)) * 0.5
        similar[b] = ((np.abs(x[b, None] - x) <= delta) & (np.abs(y[b, None] - y) <= delta)
                      & (np.abs((x + w)[b, None] - (x + w)) <= delta) & (np.abs((y + h)[b, None] - (y + h)) <= delta))
    labels = np.arange(n)
    while True:  # connected components by propagating the smallest label
        new = np.concatenate([np.where(similar[b], labels[None, :], n).min(axis=1) for b in blocks])
        new = new[new]
        if np.array_equal(new, labels):
            break
        labels = new
    groups = []
    for lab in np.unique(labels):
        members = r[labels == lab]
        mean = np.rint(members.sum(axis=0) / len(members)).astype(int)
        groups.append((tuple(int(v) for v in mean), len(members)))
    kept = []
    for i, ((x1, y1, w1, h1), n1) in enumerate(groups):
        if n1 <= threshold:
            continue
        nested = False
        for j, ((x2, y2, w2, h2), n2) in enumerate(groups):
            if j == i or n2 <= threshold:
                continue
            dx, dy = round(w2 * eps), round(h2 * eps)
            if (x1 >= x2 - dx and y1 >= y2 - dy and x1 + w1 <= x2 + w2 + dx and y1 + h1 <= y2 + h2 + dy
                    and (n2 > max(3, n1) or n1 < 3)):
                nested = True
                break
        if not nested:
            kept.append((x1, y1, w1, h1))
    return kept
