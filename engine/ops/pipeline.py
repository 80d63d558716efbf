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
from urllib.parse import quote

from ..errors import UnknownOperation
from ..pipeline_syntax import split, suggest
from .base import REGISTRY, Operation


@dataclass(frozen=True)
class Step:
    op: Operation
    params: dict[str, Any]

    def text(self) -> str:
        args = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.op.name}:{args}" if args else self.op.name


# Characters a text-form value keeps as they are (all printable ASCII but % , | and space).
_SAFE = "".join(chr(c) for c in range(33, 127) if chr(c) not in "%,|")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return quote(value, safe=_SAFE)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _lookup(name: str) -> Operation:
    op = REGISTRY.get(name)
    if op is None:
        valid = ", ".join(sorted(REGISTRY))
        raise UnknownOperation(f"unknown operation {name!r}{suggest(name, REGISTRY)} "
                               f"(valid operations: {valid})")
    return op


def parse(pipeline: str | list) -> list[Step]:
    """Validated steps for a pipeline in either form. Raises a PipelineError subclass."""
    return [Step(op, op.bind(params)) for op, params in ((_lookup(n), p) for n, p in split(pipeline))]


def canonical(pipeline: str | list) -> str:
    """The one text form of a pipeline: every parameter explicit, in a fixed order."""
    return "|".join(step.text() for step in parse(pipeline))
