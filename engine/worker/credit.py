"""Credit sized to the link: how many tasks a pool process asks the broker to keep at hand.

With a fixed credit a process far from its broker idles a round trip after each batch
of tasks: it answers, and the next task is still on its way. The credit that keeps it busy
is the bandwidth-delay product of its link in tasks: one running, plus as many as finish
while a task travels from the broker: about ``1 + round trip / task time``.

Socket-free. The process tells it when it runs out of work (``idle``), when a task arrives
(``arrived``, with the broker's ``more`` flag: it had other tasks waiting, so the wait was
the link's and not an empty queue's) and how long a task ran (``ran``). Each such wait
says how many more tasks would have covered it; the credit grows by the median of the
last few waits (one spike, a retransmission, is not a round trip), up to ``max_credit``. It never shrinks while
connected: the broker frees a slot with every answer, so a smaller credit only takes effect
at the next registration, which starts again from ``base``.
"""
from __future__ import annotations

import math
import statistics
from collections import deque

SAMPLES = 4  # waits looked at before growing: their median is the link's (one spike or one burst is not)
TASK_EWMA = 0.2  # weight of the newest task time in the running mean


class Credit:
    def __init__(self, base: int, max_credit: int) -> None:
        self.base = base
        self.max_credit = max(base, max_credit)
        self.current = base
        self.task_s: float | None = None  # running mean of task times
        self._idle_since_s: float | None = None
        self._more = False  # the last task came with others waiting at the broker
        self._waits_s: deque[float] = deque(maxlen=SAMPLES)

    def reset(self) -> None:
        """A new registration: the broker counts ``base`` slots again."""
        self.current = self.base
        self._idle_since_s = None
        self._waits_s.clear()

    def ran(self, seconds: float) -> None:
        self.task_s = seconds if self.task_s is None else (1 - TASK_EWMA) * self.task_s + TASK_EWMA * seconds

    def idle(self, now_s: float) -> None:
        """The process answered its last task and has none at hand."""
        if self._idle_since_s is None:
            self._idle_since_s = now_s

    def arrived(self, now_s: float, more: bool) -> int:
        """A task arrived; returns how many slots to add (0: none)."""
        waited_since, self._idle_since_s = self._idle_since_s, None
        starved = self._more  # the broker had work: the wait was the link's
        self._more = more
        if waited_since is None or not starved or not self.task_s or self.current >= self.max_credit:
            return 0
        self._waits_s.append(now_s - waited_since)
        if len(self._waits_s) < SAMPLES:
            return 0
        # Rounded: a wait shorter than half a task is not worth a task held away from other workers.
        add = min(math.floor(statistics.median(self._waits_s) / self.task_s + 0.5), self.max_credit - self.current)
        self._waits_s.clear()
        if add <= 0:
            return 0
        self.current += add
        return add
