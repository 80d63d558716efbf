"""The pipeline's syntax, with no numpy or OpenCV: what the broker needs to route a task.

Text form:       ``resize:width=640|sharpen:amount=1.5|webp:quality=80``
Structured form: ``[{"op": "resize", "params": {"width": 640}}, {"op": "webp"}]``

``split`` turns either form into ``(operation name, raw parameters)`` pairs, checking the
syntax only; ``engine.ops.pipeline`` then checks the names and parameters against the
registry. ``step_names`` is what a task needs of a worker (Majordomo's service name, one
per step): the broker routes it only to a worker that offers every one.
"""
from __future__ import annotations

import difflib
import functools
from typing import Any
from urllib.parse import unquote

from .errors import BadParameter, PipelineError

MAX_STEPS = 32
MAX_TEXT_CHARS = 4096


def suggest(name: str, choices) -> str:
    """" — did you mean 'x'?" for the closest of ``choices`` to a mistyped ``name``, else ""."""
    close = difflib.get_close_matches(name.lower(), sorted(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def split_text(text: str) -> list[tuple[str, dict[str, str]]]:
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


def split_structured(items: list) -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            steps.extend(split_text(item))
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


def split(pipeline: str | list) -> list[tuple[str, dict[str, Any]]]:
    """``(name, raw params)`` per step, in order. Raises a PipelineError subclass."""
    if isinstance(pipeline, str):
        raw = split_text(pipeline)
    elif isinstance(pipeline, (list, tuple)):
        raw = split_structured(list(pipeline))
    else:
        raise PipelineError(f"a pipeline is text or a list of steps, got {type(pipeline).__name__}")
    if not raw:
        raise PipelineError("the pipeline has no steps")
    if len(raw) > MAX_STEPS:
        raise PipelineError(f"the pipeline has {len(raw)} steps; the limit is {MAX_STEPS}")
    return raw


@functools.lru_cache(maxsize=1024)
def _names_of_text(pipeline: str) -> frozenset[str] | None:
    return _names(pipeline)


def _names(pipeline: str | list) -> frozenset[str] | None:
    try:
        return frozenset(name for name, _ in split(pipeline))
    except PipelineError:
        return None


def step_names(pipeline: str | list) -> frozenset[str] | None:
    """The operations a pipeline uses; None if its syntax is wrong (a worker then answers
    with the precise error). Text forms are remembered: clients repeat a few pipelines."""
    return _names_of_text(pipeline) if isinstance(pipeline, str) else _names(pipeline)
