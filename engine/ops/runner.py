"""Run a pipeline on encoded bytes: plan, decode, apply each step, encode.

With the ``json`` output step there is no image: the result bytes are the reply's
metadata as compact UTF-8 JSON (the same map the reply header carries, before the worker
adds its name and time), and the metadata's ``format`` is ``"json"``. Every consumer that
stores or forwards a result thus gets a non-empty, self-describing body.
"""
from __future__ import annotations

import json
import time
from typing import Any

from . import codec
from .base import Context
from .pipeline import Step, parse
from .planner import Plan
from .planner import plan as make_plan

# Formats an output keeps by default when no format step is given.
_KEEP_FORMATS = {"jpeg", "png", "webp"}


def _steps(pipeline: str | list | list[Step]) -> list[Step]:
    """Parsed steps (a list of them is taken as it is; text or a list of dicts is parsed)."""
    if isinstance(pipeline, list) and pipeline and isinstance(pipeline[0], Step):
        return pipeline
    return list(parse(pipeline))


def run(data, pipeline: str | list | list[Step], *, limits: codec.Limits = codec.Limits(),
        cache: dict | None = None, plan: bool = True) -> tuple[bytes, dict[str, Any]]:
    """Process ``data`` and return the encoded result and its metadata.

    With ``plan=False`` every step runs as written on a full-colour, full-size decode
    (the reference the planner is tested against).
    """
    started = time.perf_counter()
    steps = _steps(pipeline)
    header = codec.probe(data, limits)
    chosen = make_plan(list(steps), header) if plan else Plan(list(steps))
    if plan and not chosen.steps and header.format == "jpeg":  # (JPEG headers tell the channels)
        return _unchanged(data, header, started)
    ctx = Context(output_format=header.format if header.format in _KEEP_FORMATS else "png",
                  cache={} if cache is None else cache, max_pixels=limits.max_pixels,
                  max_memory_bytes=limits.max_memory_bytes, held_bytes=len(data))
    ctx.check_memory(f"decoding this {header.width}x{header.height} {header.format.upper()} image",
                     header.peak_bytes(grey=chosen.grey, scaled=chosen.min_size is not None))
    image, in_fmt = codec.decode(data, grey=chosen.grey, limits=limits, header=header,
                                 min_size=chosen.min_size)
    decoded = time.perf_counter()
    ctx.quality = 3 if ctx.output_format == "png" else 90
    for number, step in enumerate(chosen.steps, 1):
        h, w = image.shape[:2]
        ctx.check_memory(f"step {number} ({step.op.name}) on a {w}x{h} image", step.op.need(step.params, image, ctx))
        image = step.op(image, ctx, step.params)
    processed = time.perf_counter()
    out = b"" if ctx.output_format == "json" else codec.encode(image, ctx.output_format, ctx.quality,
                                                               ctx.jpeg_subsampling)
    done = time.perf_counter()
    meta = dict(ctx.meta)
    if chosen.notes:
        meta["plan"] = chosen.notes
    meta.update(format=ctx.output_format, width=int(image.shape[1]), height=int(image.shape[0]),
                channels=1 if image.ndim == 2 else int(image.shape[2]), input_format=in_fmt,
                decode_ms=round((decoded - started) * 1000, 3),
                ops_ms=round((processed - decoded) * 1000, 3),
                encode_ms=round((done - processed) * 1000, 3),
                pipeline_ms=round((done - started) * 1000, 3))
    if ctx.output_format == "json":
        out = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    return out, meta


def _unchanged(data, header, started: float) -> tuple[bytes, dict[str, Any]]:
    """Every step changes nothing: the input is the output, never decoded."""
    width, height = header.display_size
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    return bytes(data), {"format": header.format, "width": width, "height": height,
                         "channels": 1 if header.grey else 3,
                         "input_format": header.format,
                         "plan": ["unchanged: every step is a no-op"], "decode_ms": 0.0, "ops_ms": 0.0,
                         "encode_ms": 0.0, "pipeline_ms": elapsed_ms}
