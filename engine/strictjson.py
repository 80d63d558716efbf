"""JSON from outside, decoded strictly and within bounds (used by the broker's compat
sockets and the web gateway): no NaN or Infinity, nesting checked before the decoder
recurses, and the time the check takes bounded by the body's size in C, not in Python.

    obj = loads(raw, max_depth=32)      # or BadJSON saying why
"""
from __future__ import annotations

import json
import math
import re

from .errors import ProtocolError

MAX_BRACKETS = 10_000  # arrays and objects in one body: the depth scan below visits each once

_SKIP = re.compile(rb'[^"\[\]{}]*')  # everything but strings and brackets
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN = frozenset(b"[{")


class BadJSON(ProtocolError, ValueError):
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


def loads(raw: bytes, *, max_depth: int, max_brackets: int = MAX_BRACKETS) -> object:
    """The decoded body, or ``BadJSON``."""
    brackets = raw.count(b"[") + raw.count(b"{")  # C speed; bounds the Python scan that follows
    if brackets > max_brackets:
        raise BadJSON(f"the JSON is too deep or too branched: it holds {brackets} arrays or objects; "
                      f"at most {max_brackets} are accepted")
    if brackets > max_depth and too_deep(raw, max_depth):
        raise BadJSON(f"the JSON is nested too deep (more than {max_depth} levels)")
    try:
        return json.loads(raw, parse_constant=_constant, parse_float=_finite)
    except BadJSON:
        raise
    except RecursionError:
        raise BadJSON(f"the JSON is nested too deep (more than {max_depth} levels)") from None
    except ValueError as exc:  # includes UnicodeDecodeError and over-long integers
        raise BadJSON(f"the body is not JSON: {str(exc)[:120]}") from None
