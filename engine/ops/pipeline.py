"""Pipelines: parse the text or structured form, validate every step before decoding.

Text form:       ``resize:width=640|sharpen:amount=1.5|webp:quality=80``
Structured form: ``[{"op": "resize", "params": {"width": 640}}, {"op": "webp"}]``

In the text form a value may hold ``,``, ``|`` or surrounding spaces only %-escaped
(``text:text=Hello%2C world``); ``canonical`` escapes them, so its text parses back to
the same steps.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from ..errors import BadParameter, PipelineError, UnknownOperation
from .base import REGISTRY, Operation

MAX_STEPS = 32
MAX_TEXT_CHARS = 4096


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


def suggest(name: str, choices) -> str:
    """" — did you mean 'x'?" for the closest of ``choices`` to a mistyped ``name``, else ""."""
    close = difflib.get_close_matches(name.lower(), sorted(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _lookup(name: str) -> Operation:
    op = REGISTRY.get(name)
    if op is None:
        valid = ", ".join(sorted(REGISTRY))
        raise UnknownOperation(f"unknown operation {name!r}{suggest(name, REGISTRY)} "
                               f"(valid operations: {valid})")
    return op


def _split_text(text: str) -> list[tuple[str, dict[str, str]]]:
    if len(text) > MAX_TEXT_CHARS:
        raise PipelineError(f"pipeline text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    steps = []
    for chunk in text.split("|"):
        chunk = chunk.strip()
        if not chunk:
            raise PipelineError(f"empty step in pipeline {text!r} (two '|' in a row, or one at an end)")
        name, _, argtext = chunk.partition(":")
        params: dict[str, str] = {}
        for pair in filter(None, (a.strip() for a in argtext.split(","))):
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise BadParameter(f"{name.strip()}: expected key=value, got {pair!r}")
            params[key.strip()] = unquote(value.strip())
        steps.append((name.strip(), params))
    return steps


def _split_structured(items: list) -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            steps.extend(_split_text(item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("op"), str):
            raise PipelineError(f"step {i} must be a map with an 'op' name, got {item!r:.80}")
        params = item.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise PipelineError(f"step {i} ({item['op']}): 'params' must be a map of names to values")
        extra = set(item) - {"op", "params"}
        if extra:
            raise PipelineError(f"step {i} ({item['op']}): unexpected keys {sorted(extra)}; use 'op' and 'params'")
        steps.append((item["op"], params))
    return steps


def parse(pipeline: str | list) -> list[Step]:
    """Validated steps for a pipeline in either form. Raises a PipelineError subclass."""
    if isinstance(pipeline, str):
        raw = _split_text(pipeline)
    elif isinstance(pipeline, (list, tuple)):
        raw = _split_structured(list(pipeline))
    else:
        raise PipelineError(f"a pipeline is text or a list of steps, got {type(pipeline).__name__}")
    if not raw:
        raise PipelineError("the pipeline has no steps")
    if len(raw) > MAX_STEPS:
        raise PipelineError(f"the pipeline has {len(raw)} steps; the limit is {MAX_STEPS}")
    return [Step(op, op.bind(params)) for op, params in ((_lookup(n), p) for n, p in raw)]


def canonical(pipeline: str | list) -> str:
    """The one text form of a pipeline: every parameter explicit, in a fixed order."""
    return "|".join(step.text() for step in parse(pipeline))
