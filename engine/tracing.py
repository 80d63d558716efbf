"""Trace ids: one id a client chooses for a task, carried to every log line about it and back.

A client sets ``options={"trace_id": "..."}`` on a request (the HTTP API takes it from a
W3C ``traceparent`` header). The broker checks it at admission, logs it with everything it
says about the task, forwards it with the task, and returns it in the reply's metadata
(``meta["trace_id"]``, on results and errors alike); a worker's log lines about the task
carry it too. At most ``MAX_CHARS`` letters, digits, ``-`` and ``_``: an id is a label,
never data.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import BadParameter

KEY = "trace_id"
MAX_CHARS = 64
_VALID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CHARS}}}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def trace_id(options: dict | None) -> str | None:
    """The request's trace id, None if it has none; BadParameter if it is not a valid one."""
    value: Any = (options or {}).get(KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not _VALID.fullmatch(value):
        raise BadParameter(f"options.{KEY} must be 1 to {MAX_CHARS} letters, digits, '-' or '_', got {value!r:.80}")
    return value


def from_traceparent(header: str | None) -> str | None:
    """The trace id (32 hex digits) of a W3C ``traceparent`` header, None if absent or malformed
    (the specification says to ignore a malformed one); an all-zero trace id is invalid."""
    match = _TRACEPARENT.fullmatch((header or "").strip().lower())
    if match is None or match.group(1) == "ff" or set(match.group(2)) == {"0"}:
        return None
    return match.group(2)


def tag(trace: str | None) -> str:
    """For log lines: `` [trace ID]``, or nothing."""
    return f" [trace {trace}]" if trace else ""
