"""The images and pipelines every peer runs: the same bytes and the same text for all.

Images: the sample photographs in tests/data (about 0.3 MP), and 1080p and 4K frames
made from them in memory (scaled to cover, centre-cropped, JPEG quality 90).
Pipelines: chosen at run time from the operation registry, so a workload whose
operation is not registered yet is skipped with its reason instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import simplejpeg

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")
FRAME_SOURCES = ("hubble_deep_field.jpg", "retina.jpg", "rocket.jpg", "coffee.jpg")
JPEG_QUALITY = 90
SIZES = {"photo": None, "1080p": (1920, 1080), "4k": (3840, 2160)}

# Candidates per workload, in order of preference; the first the registry accepts wins.
RESIZE_FIT_512 = ("resize:width=512,height=512,mode=fit", "resize:width=512,height=512,fit=contain",
                  "resize:width=512,height=512", "resize:max=512", "resize:width=512")
PIPELINES = {
    "grayscale": ("grayscale",),
    "edge": ("edge",),
    "resize": RESIZE_FIT_512,
    "chain": tuple(f"{r}|sharpen|jpeg:quality=80" for r in RESIZE_FIT_512)
    + tuple(f"{r}|blur|jpeg:quality=80" for r in RESIZE_FIT_512)
    + tuple(f"{r}|grayscale|jpeg:quality=80" for r in RESIZE_FIT_512),
}
TINY_PIPELINES = ("noop", "jpeg")  # broker capacity: the cheapest pipeline there is


@dataclass(frozen=True)
class ImageSet:
    size: str
    images: tuple[bytes, ...]
    megapixels: tuple[float, ...]

    @property
    def mean_mp(self) -> float:
        return sum(self.megapixels) / len(self.megapixels)


@dataclass(frozen=True)
class Workload:
    name: str
    pipeline: str | None  # None: skipped
    reason: str = ""


def _encode(image) -> bytes:
    return simplejpeg.encode_jpeg(image, JPEG_QUALITY, colorspace="BGR")


def _cover(image, width: int, height: int):
    """Scale to cover width x height, then cut the centre: a full frame, no borders."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    big = cv2.resize(image, (max(width, round(w * scale)), max(height, round(h * scale))),
                     interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[top:top + height, left:left + width].copy()


def _read(name: str):
    image = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"sample photograph {DATA / name} is missing or unreadable")
    return image


def image_set(size: str) -> ImageSet:
    """The benchmark images of one size class, as JPEG bytes."""
    if SIZES[size] is None:
        blobs = [(DATA / name).read_bytes() for name in PHOTOS]
        dims = [simplejpeg.decode_jpeg_header(b)[:2] for b in blobs]
        return ImageSet(size, tuple(blobs), tuple(h * w / 1e6 for h, w in dims))
    width, height = SIZES[size]
    blobs = [_encode(_cover(_read(name), width, height)) for name in FRAME_SOURCES]
    return ImageSet(size, tuple(blobs), tuple(width * height / 1e6 for _ in blobs))


def tiny_jpeg(side: int = 8) -> bytes:
    import numpy as np

    image = np.full((side, side, 3), 128, dtype=np.uint8)
    return _encode(image)


def _first_valid(candidates: tuple[str, ...]) -> str | None:
    from engine.errors import PipelineError
    from engine.ops import parse

    for text in candidates:
        try:
            parse(text)
        except PipelineError:
            continue
        return text
    return None


def workloads(names: list[str]) -> list[Workload]:
    from engine.ops import REGISTRY

    out = []
    for name in names:
        pipeline = _first_valid(PIPELINES[name])
        if pipeline is None:
            needed = sorted({step.split(":")[0] for c in PIPELINES[name] for step in c.split("|")} - set(REGISTRY))
            reason = f"operation(s) {', '.join(needed)} not registered (python -m engine.ops lists them)"
            out.append(Workload(name, None, reason))
        else:
            out.append(Workload(name, pipeline))
    return out


def tiny_pipeline() -> str:
    return _first_valid(TINY_PIPELINES) or "grayscale"
