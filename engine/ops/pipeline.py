"""Pipelines: parse the text or structured form, validate every step before decoding.

Text form:       ``resize:width=640|sharpen:amount=1.5|webp:quality=80``
Structured form: ``[{"op": "resize", "params": {"width": 640}}, {"op": "webp"}]``

In the text form a value may hold ``,``, ``|`` or surrounding spaces only %-escaped
(``text:text=Hello%2C world``); ``canonical`` escapes them, so its text parses back to
the same steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..pipeline_syntax import split, step_text, unknown_operation
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


def parse(pipeline: str | list) -> list[Step]:
    """Validated steps for a pipeline in either form. Raises a PipelineError subclass."""
    return [Step(op, op.bind(params)) for op, params in ((_lookup(n), p) for n, p in split(pipeline))]


def canonical(pipeline: str | list) -> str:
    """The one text form of a pipeline: every parameter explicit, in a fixed order."""
    return "|".join(step.text() for step in parse(pipeline))
