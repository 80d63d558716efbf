"""Pipelines: parse the text or structured form, validate every step before decoding.

Text form:       ``resize:width=640|sharpen:amount=1.5|webp:quality=80``
Structured form: ``[{"op": "resize", "params": {"width": 640}}, {"op": "webp"}]``

In the text form a value may hold ``,``, ``|`` or surrounding spaces only %-escaped
(``text:text=Hello%2C world``); ``canonical`` escapes them, so its text parses back to
the same steps.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..pipeline_syntax import FORMAT, check_formats_last, split, step_text, unknown_operation
from .base import REGISTRY, Operation


@dataclass(frozen=True)
class Step:
    op: Operation
    params: dict[str, Any]

    def text(self) -> str:
        return step_text(self.op.name, self.params)


def _lookup(name: str) -> Operation:
    op = REGISTRY.get(name)
    if op is None:
        raise unknown_operation(name, REGISTRY)
    return op


# A worker runs the same few pipelines again and again: their steps are remembered per text
# (7 us for ``grayscale``, 25 us for a three-step pipeline, parsed afresh each time). Steps are
# frozen and no operation writes to its params. Bounded in count and in text length, so a
# peer sending endless distinct pipelines costs at most MEMO_TEXTS * MEMO_MAX_CHARS.
MEMO_TEXTS = 256
MEMO_MAX_CHARS = 2048


def parse(pipeline: str | list) -> list[Step]:
    """Validated steps for a pipeline in either form. Raises a PipelineError subclass."""
    if isinstance(pipeline, str) and len(pipeline) <= MEMO_MAX_CHARS:
        return list(_parse_text(pipeline))
    return _parse(pipeline)


@functools.lru_cache(maxsize=MEMO_TEXTS)
def _parse_text(pipeline: str) -> tuple[Step, ...]:
    return tuple(_parse(pipeline))  # an error is raised, not remembered


def _parse(pipeline: str | list) -> list[Step]:
    raw = split(pipeline)
    steps = [Step(op, op.bind(params)) for op, params in ((_lookup(n), p) for n, p in raw)]
    kinds = [step.op.kind for step in steps]
    if FORMAT in kinds:  # the same refusal as the broker's check against the declared schema
        check_formats_last(raw, kinds, (name for name, op in REGISTRY.items() if op.kind == FORMAT))
    return steps


def canonical(pipeline: str | list) -> str:
    """The one text form of a pipeline: every parameter explicit, in a fixed order."""
    return "|".join(step.text() for step in parse(pipeline))
