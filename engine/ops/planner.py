"""The planner: make a chain cheaper without changing its result (beyond rounding).

Given the parsed steps and the input's header, ``plan`` decides:

- **grey decode**: when a JPEG's chain drops colour before anything looks at it (its
  first transforms are geometric and then comes a ``makes_grey`` one), the luma plane
  is decoded straight to one channel, skipping chroma upsampling and colour conversion
  (other formats gain nothing from it, so they decode as usual and stay bit-exact);
- **DCT scaling**: when the first transforms are geometric and the first one that
  resizes shrinks by 2x or more, a JPEG is decoded already scaled (libjpeg's 1/8..1
  scaling via simplejpeg), never below the size that step produces;
- **skipping no-ops**: steps whose parameters change nothing (``noop`` hint) are dropped;
- **fusing tables**: adjacent tone steps with a ``lut`` hint become one table lookup.

Warm per-process state (tables, kernels, cascades) lives in the ``cache`` dict that
operations receive; the planner's fused tables are cached there too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Operation
from .headers import Header
from .imageutil import lut_apply, lut_bytes
from .pipeline import Step

DCT_MIN_SHRINK = 2.0  # only decode scaled when the first resize shrinks at least this much


@dataclass
class Plan:
    steps: list[Step]
    grey: bool = False
    min_size: tuple[int, int] | None = None  # JPEG DCT scaling target (width, height)
    notes: list[str] = field(default_factory=list)  # what the planner did, for the reply


def _compose(steps: list[Step]) -> np.ndarray:
    """The one table equivalent to ``steps``, each of which has a table (``_fuse_tables``' runs)."""
    table = np.arange(256, dtype=np.uint8)
    for step in steps:
        lut = step.op.lut
        assert lut is not None, "only steps with a table are composed"
        table = lut(step.params)[table]
    return table


def _fuse(run: list[Step]) -> Step:
    names = "+".join(s.op.name for s in run)
    key = ("fused-lut", tuple((s.op.name, tuple(sorted(s.params.items()))) for s in run))

    def apply(image, ctx):
        return lut_apply(image, ctx.warm(key, lambda: _compose(run), keep=256))

    op = Operation(name=f"lut({names})", fn=apply, params=(), help=f"fused tables: {names}", peak_bytes=lut_bytes)
    return Step(op, {})


def _fuse_tables(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    run: list[Step] = []
    end: list[Step | None] = [None]  # the last run ends there
    for step in [*steps, *end]:
        if step is not None and step.op.lut is not None:
            run.append(step)
            continue
        if len(run) > 1:
            out.append(_fuse(run))
        else:
            out.extend(run)
        run = []
        if step is not None:
            out.append(step)
    return out


def plan(steps: list[Step], header: Header) -> Plan:
    """The cheaper, equivalent way to run ``steps`` on an input with this header."""
    notes = []
    kept = [s for s in steps if not (s.op.noop and s.op.noop(s.params))]
    if len(kept) < len(steps):
        notes.append(f"skipped {len(steps) - len(kept)} no-op step(s)")
    transforms = [s for s in kept if s.op.kind == "transform"]
    leading = 0
    while leading < len(transforms) and transforms[leading].op.geometric:
        leading += 1
    grey = header.format == "jpeg" and leading < len(transforms) and transforms[leading].op.makes_grey
    if grey:
        notes.append("decoded straight to grey")
    min_size = None
    if header.format == "jpeg" and leading and transforms[0].op.shrink is not None:
        width, height = header.display_size
        out_w, out_h = transforms[0].op.shrink(transforms[0].params, width, height)
        if min(width / out_w, height / out_h) >= DCT_MIN_SHRINK:
            min_size = (out_w, out_h)
            notes.append(f"JPEG decoded scaled, to at least {out_w}x{out_h}")
    fused = _fuse_tables(kept)
    if len(fused) < len(kept):
        notes.append("fused adjacent table steps")
    return Plan(fused, grey=grey, min_size=min_size, notes=notes)

