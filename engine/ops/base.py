"""The operation registry: declared parameters, one place for timing and validation.

An operation is a small module that calls ``register`` once, thumbor-filter style::

    @register("edge", help="Canny edge detection",
              params=[Param("low", float, 100.0, min=0, max=1000, help="lower hysteresis threshold")])
    def edge(image, ctx, *, low):
        ...

The function takes a numpy image (H x W grey, or H x W x 3 BGR, or H x W x 4 BGRA,
uint8) and returns one. It must be vectorised (no per-pixel Python). Any image from
1x1 up to the limits may arrive: an OpenCV refusal of an extreme shape is answered
here, once for all operations, as ``bad_image`` naming the operation and the shape. ``ctx`` carries
the output settings, metadata for the reply, the size limits, and a per-process cache
for warm state.

An operation may also tell the planner about itself (see ``planner.py``):

- ``makes_grey``: the output is single-channel whatever the input;
- ``geometric``: it only moves pixels (resize, crop, flip...), so it commutes with
  dropping colour;
- ``shrink(params, width, height)``: the (width, height) it will produce from an input
  of that size, so a JPEG can be decoded already scaled down;
- ``noop(params)``: true when these parameter values change nothing;
- ``lut(params)``: a 256-entry uint8 table equivalent to the operation, so adjacent
  table operations fuse into one pass;
- ``check(params)``: cross-parameter validation, run when a pipeline is parsed.

And about its memory (``runner.py`` checks it against the worker's budget before the step runs):

- ``peak_bytes(params, width, height, channels)``: the most bytes the step allocates for an
  input of that shape (its output and every intermediate, not the input itself). Without
  it the runner assumes ``DEFAULT_PEAK_FACTOR`` colour images of the output's size; an
  operation that needs more (float planes, colour conversions of grey input, fixed
  tables) must declare it. ``tests/test_hardening_ops_memory.py`` holds every operation
  to its figure by measuring a pool process's peak RSS.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import ImageError, ImageTooLarge
from ..pipeline_syntax import bind, check_any_of, coerce
from .codec import MAX_MEMORY_BYTES, MAX_PIXELS

REQUIRED = object()
# Without a peak_bytes hint: this many colour (3-channel) images the size of the output.
DEFAULT_PEAK_FACTOR = 2


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, range, default and a line of help."""

    name: str
    type: type
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""
    # Checks that travel in the schema (pipeline_syntax.coerce), so the broker, the web gateway and
    # the command line refuse what a worker would, before anything is stored or queued:
    odd: bool = False  # an int that must be odd
    format: str | None = None  # a str of a named format (pipeline_syntax.FORMATS): "hex_colour"
    max_length: int | None = None  # a str of at most this many characters
    nonempty: bool = False  # a str that must not be empty

    def describe(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "type": self.type.__name__, "help": self.help}
        if self.default is not REQUIRED:
            out["default"] = self.default
        else:
            out["required"] = True
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices:
            out["choices"] = list(self.choices)
        for key in ("odd", "nonempty"):
            if getattr(self, key):
                out[key] = True
        for key in ("format", "max_length"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def coerce(self, op: str, value: Any) -> Any:
        """The value as this parameter's type, checked against range and choices."""
        return coerce(op, self.described, value)

    @functools.cached_property
    def described(self) -> dict:
        """``describe()``, made once: the schema that ``pipeline_syntax`` checks against."""
        return self.describe()


@dataclass
class Context:
    """What a pipeline run shares between its steps."""

    output_format: str = "jpeg"
    quality: int = 90
    jpeg_subsampling: str = "444"  # the jpeg step's chroma subsampling
    meta: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # per-process warm state (cascades, tables)
    max_pixels: int = MAX_PIXELS  # no step may produce a larger image (run() passes its limit)
    max_memory_bytes: int = MAX_MEMORY_BYTES  # what one task may hold at once (run() passes its limit)
    held_bytes: int = 0  # held for the whole task meanwhile (the encoded input)

    def warm(self, key: tuple, make: Callable[[], Any], *, keep: int = 64) -> Any:
        """Per-process state for ``key`` (a tuple whose first item names its kind), made
        on first use and kept across tasks. At most ``keep`` entries of one kind stay;
        the least recently used goes first, so odd parameters cannot grow the cache."""
        cache = self.cache
        if key in cache:
            cache[key] = cache.pop(key)  # most recently used last
            return cache[key]
        same_kind = [k for k in cache if isinstance(k, tuple) and k[:1] == key[:1]]
        for old in same_kind[:max(0, len(same_kind) - keep + 1)]:
            del cache[old]
        cache[key] = value = make()
        return value

    def check_size(self, op: str, width: int, height: int) -> None:
        """Refuse, before allocating, an output larger than the pixel limit."""
        if width * height > self.max_pixels:
            raise ImageTooLarge(f"{op} would make a {width}x{height} image "
                                f"({width * height / 1e6:.1f} MP); the limit is {self.max_pixels / 1e6:.1f} MP")

    def check_memory(self, what: str, need: int) -> None:
        """Refuse, before allocating, a step that would take the task over its memory budget:
        ``need`` bytes on top of what the task holds meanwhile (``held_bytes``)."""
        total = self.held_bytes + need
        if total > self.max_memory_bytes:
            raise ImageTooLarge(f"{what} would need about {total / 2**20:.0f} MiB at once; this worker's memory "
                                f"budget per task is {self.max_memory_bytes / 2**20:.0f} MiB (worker flag "
                                "--memory-budget-mb, ENGINE_MEMORY_BUDGET_MB): send a smaller image, resize it "
                                "earlier in the pipeline (a JPEG is then decoded already scaled), or raise the budget")


@dataclass(frozen=True)
class Operation:
    """A registered operation. ``kind`` is "transform" (image -> image) or "format"
    (sets the output encoding). ``makes_grey`` tells the planner that the output
    is single-channel whatever the input, so decoding can go straight to grey."""

    name: str
    fn: Callable[..., np.ndarray | None]
    params: tuple[Param, ...]
    help: str
    kind: str = "transform"
    makes_grey: bool = False
    geometric: bool = False
    shrink: Callable[[dict, int, int], tuple[int, int]] | None = None
    noop: Callable[[dict], bool] | None = None
    lut: Callable[[dict], np.ndarray] | None = None
    check: Callable[[dict], None] | None = None
    learned: bool = False  # runs a model that ``warm_up`` loads: not offered where loading failed
    any_of: tuple[str, ...] = ()  # parameters of which one must be set (not 0): declared, so checked everywhere
    any_of_help: str = ""
    peak_bytes: Callable[[dict, int, int, int], int] | None = None

    def bind(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Checked, complete keyword arguments from user-given ones (strings or typed)."""
        out = bind(self.name, [p.described for p in self.params], raw)
        check_any_of(self.name, self.schema_extra, out)
        if self.check is not None:
            self.check(out)
        return out

    def need(self, params: dict[str, Any], image: np.ndarray, ctx: Context) -> int:
        """Bytes this step holds at its peak on ``image``: the input and what it allocates
        (``peak_bytes``, or the default). A declared output size is checked against the pixel
        limit first (the more useful refusal)."""
        h, w = image.shape[:2]
        channels = 1 if image.ndim == 2 else image.shape[2]
        if self.kind == "format":
            made = 0  # it only chooses the encoding (which comes after every step)
        elif self.peak_bytes is not None:
            made = self.peak_bytes(params, w, h, channels)
        else:
            out_w, out_h = self.shrink(params, w, h) if self.shrink is not None else (w, h)
            made = DEFAULT_PEAK_FACTOR * out_w * out_h * max(channels, 3)
        if self.shrink is not None:
            ctx.check_size(self.name, *self.shrink(params, w, h))
        return held_bytes(image) + int(made)

    def __call__(self, image: np.ndarray, ctx: Context, params: dict[str, Any]) -> np.ndarray:
        started = time.perf_counter()
        try:
            result = self.fn(image, ctx, **params)
        except cv2.error as exc:  # OpenCV refusing this input's shape or layout: the input's fault
            h, w = image.shape[:2]
            channels = 1 if image.ndim == 2 else image.shape[2]
            reason = getattr(exc, "err", "") or str(exc).strip().splitlines()[-1]
            raise ImageError(f"{self.name} cannot be applied to this {w}x{h} {channels}-channel image "
                             f"(OpenCV: {reason})") from exc
        timings = ctx.meta.setdefault("op_ms", [])
        timings.append([self.name, round((time.perf_counter() - started) * 1000, 3)])
        return image if result is None else result

    @property
    def schema_extra(self) -> dict:
        """What the operation declares beyond its parameters, as the schema carries it."""
        return {"any_of": list(self.any_of), "any_of_help": self.any_of_help} if self.any_of else {}

    def describe(self) -> dict:
        return {"name": self.name, "help": self.help, "kind": self.kind,
                "params": [p.describe() for p in self.params], **self.schema_extra}


def held_bytes(image: np.ndarray) -> int:
    """Bytes an image keeps alive: a view (a crop) holds all of the array it was cut from."""
    root = image
    while isinstance(root.base, np.ndarray):
        root = root.base
    return max(image.nbytes, root.nbytes)


REGISTRY: dict[str, Operation] = {}


def register(name: str, *, help: str, params: list[Param] | tuple[Param, ...] = (),
             kind: str = "transform", **hints: Any) -> Callable:
    """Decorator: add the function to the registry under ``name``.

    ``hints`` are the planner's keyword fields of ``Operation`` (makes_grey, geometric,
    shrink, noop, lut, check), ``learned`` and ``peak_bytes``.
    """

    def deco(fn: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"operation {name!r} is registered twice")
        REGISTRY[name] = Operation(name=name, fn=fn, params=tuple(params), help=help,
                                   kind=kind, **hints)
        return fn

    return deco
