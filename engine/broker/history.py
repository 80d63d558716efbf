"""The broker's own recent history, for the status page: a bounded ring of samples of its task
counters and queue, taken at its heartbeats (at most one per ``STEP_S``), so a page opened
after a batch still charts it. INFO returns it when asked (``{"history": true}`` in the INFO
request): ``describe`` is one small table, its times as ages so another host's clock does not
matter.
"""
from __future__ import annotations

import time
from collections import deque

STEP_S = 2.0  # at most one sample per this many seconds (one per heartbeat when they are further apart)
KEPT_S = 600.0  # ten minutes of samples at STEP_S
SAMPLES = int(KEPT_S / STEP_S)
COLUMNS = ("age_s", "completed", "failed", "queue_depth", "in_flight")
EARLY_S = 0.05  # a heartbeat this much before the step is due still takes a sample (beats drift)


class History:
    def __init__(self, step_s: float = STEP_S, size: int = SAMPLES) -> None:
        self.step_s = step_s
        self.samples: deque[tuple[float, int, int, int, int]] = deque(maxlen=size)  # (monotonic s, counters...)
        self._next_s = 0.0

    def sample(self, now_s: float, completed: int, failed: int, queue_depth: int, in_flight: int) -> bool:
        """Add a sample if one is due at ``now_s`` (monotonic seconds)."""
        if now_s < self._next_s:
            return False
        self.samples.append((now_s, completed, failed, queue_depth, in_flight))
        self._next_s = now_s + self.step_s - EARLY_S
        return True

    def describe(self, now_s: float | None = None) -> dict:
        """The samples, oldest first, as rows of ``COLUMNS`` (``age_s``: seconds before this answer)."""
        now_s = time.monotonic() if now_s is None else now_s
        rows = [[round(max(0.0, now_s - at_s), 1), *counts] for at_s, *counts in self.samples]
        return {"step_s": self.step_s, "kept_s": self.step_s * (self.samples.maxlen or 0),
                "columns": list(COLUMNS), "rows": rows}
