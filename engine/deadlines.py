"""Per-task deadlines: ``options={"deadline_ms": N}`` on a request.

The deadline counts from the moment the broker admits the task. The broker forwards
what is left of it to the worker (``forwarded``), with its wall clock at sending, so time
spent queued, and waiting at a busy pool process, counts too. A pool process answers
``deadline_exceeded`` for a task whose deadline passed before it started (or while it ran);
for one still running, its supervisor answers (within its watch interval) and the process
gets ``GRACE_S`` to come back before it is killed and replaced. ``deadline_exceeded`` is
final: the broker does not retry it (the deadline would only pass again).
"""
from __future__ import annotations

import math
from typing import Any

from .errors import BadParameter

KEY = "deadline_ms"
MAX_MS = 24 * 3600 * 1000  # one day: anything longer is a typo
GRACE_S = 1.0  # after the deadline (or a cancel), how long a busy process may take to come back before it is killed


def requested_ms(options: dict | None) -> float | None:
    """The deadline in milliseconds, None if there is none; BadParameter if it is not a valid one."""
    value: Any = (options or {}).get(KEY)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= MAX_MS:
        raise BadParameter(f"options.{KEY} must be a number of milliseconds from 0 to {MAX_MS}, got {value!r}")
    return float(value)


def forwarded(options: dict | None, received_s: float, now_s: float) -> dict | None:
    """The options a worker gets: the deadline less the time the task has spent at the broker."""
    ms = requested_ms(options)
    if ms is None:
        return options
    left_ms = max(0.0, ms - (now_s - received_s) * 1000)
    return {**options, KEY: round(left_ms, 3)}  # type: ignore[dict-item]


def due_s(options: dict | None, now_s: float) -> float | None:
    """When a task that arrived at ``now_s`` with these options is due (monotonic seconds)."""
    ms = requested_ms(options)
    return None if ms is None else now_s + ms / 1000
