"""JSON from outside, decoded strictly and within bounds, and JSON answers that are always
strict: no NaN or Infinity either way, nesting checked before decoding (a linear scan,
so ``[[[[...`` costs no recursion), lone surrogates escaped on the way out."""
from __future__ import annotations

import json
import math
import re

from starlette.responses import JSONResponse

_SKIP = re.compile(rb'[^"\[\]{}]*')  # everything but strings and brackets
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN = frozenset(b"[{")


class BadJSON(ValueError):
    """The body is not strict JSON within bounds; the message says why."""


def too_deep(raw: bytes, max_depth: int) -> bool:
    """Whether brackets nest deeper than ``max_depth`` outside of strings (one pass)."""
    depth, pos, end = 0, 0, len(raw)
    while True:
        pos = _SKIP.match(raw, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            return False
        if raw[pos] == ord('"'):
            string = _STRING.match(raw, pos)
            if string is None:
                return False  # an unterminated string: the decoder says so
            pos = string.end()
            continue
        depth += 1 if raw[pos] in _OPEN else -1
        if depth > max_depth:
            return True
        pos += 1


def _constant(name: str) -> float:
    raise BadJSON(f"{name} is not allowed: JSON numbers must be finite")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJSON(f"{text[:40]} is not a finite number")
    return value


def loads(raw: bytes, *, max_depth: int) -> object:
    """The decoded body, or ``BadJSON``."""
    if too_deep(raw, max_depth):
        raise BadJSON(f"the JSON is nested too deep (more than {max_depth} levels)")
    try:
        return json.loads(raw, parse_constant=_constant, parse_float=_finite)
    except BadJSON:
        raise
    except RecursionError:
        raise BadJSON(f"the JSON is nested too deep (more than {max_depth} levels)") from None
    except ValueError as exc:  # includes UnicodeDecodeError and over-long integers
        raise BadJSON(f"the body is not JSON: {str(exc)[:120]}") from None


class StrictJSONResponse(JSONResponse):
    """ASCII JSON: lone surrogates from the request become \\u escapes instead of a crash,
    and a non-finite number is an error here rather than invalid JSON on the wire."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
