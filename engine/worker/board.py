"""What a pool process is running, in shared memory: its supervisor reads it without a message.

Each pool process owns one ``StatusBoard`` (a ctypes structure in shared memory, made by
the supervisor before the process starts). The process writes it when a task starts and
clears it when the task ends; the supervisor reads it to find a task's process (cancel),
to see a task run past its deadline or the task timeout, and to name the task a dead
process was running. One writer; a sequence number (odd while writing) lets the reader
retry a torn read. Times are ``time.monotonic()`` seconds, one clock for all processes of
a host (CLOCK_MONOTONIC).

The board also carries the process's metrics to its supervisor without a message: how many
tasks it holds (running and waiting), and, since it started, how many tasks it ended with
each outcome of ``metrics.names.WORKER_OUTCOMES`` and the seconds the ones it ran took (a
histogram in ``BUCKETS_S``). Running totals, never reset: the supervisor adds what grew
since its last look (``Tally.minus``), so no count is lost however rarely it looks.
"""
from __future__ import annotations

import ctypes
from bisect import bisect_left
from dataclasses import dataclass
from multiprocessing.context import BaseContext

from .. import tracing
from ..metrics.names import BUCKETS_S, WORKER_OUTCOMES
from ..protocol import MAX_TASK_ID_CHARS

NO_DEADLINE = 0.0
_ID_BYTES = MAX_TASK_ID_CHARS * 4  # UTF-8: at most 4 bytes per character
READ_ATTEMPTS = 100
_OUTCOME_INDEX = {outcome: i for i, outcome in enumerate(WORKER_OUTCOMES)}


class _Shared(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("started_s", ctypes.c_double), ("due_s", ctypes.c_double),
                ("task_id", ctypes.c_char * _ID_BYTES), ("trace", ctypes.c_char * tracing.MAX_CHARS),
                ("ready", ctypes.c_uint8), ("held", ctypes.c_uint32),
                ("outcomes", ctypes.c_uint64 * len(WORKER_OUTCOMES)),
                ("buckets", ctypes.c_uint64 * (len(BUCKETS_S) + 1)), ("seconds", ctypes.c_double)]


@dataclass(frozen=True)
class Running:
    """A snapshot of a board: the task in progress (``task_id`` empty when idle)."""

    task_id: str
    started_s: float
    due_s: float | None
    held: int = 0  # tasks the process holds: the running one and those waiting
    trace: str = ""  # the task's trace id, for the supervisor's log lines


IDLE = Running(task_id="", started_s=0.0, due_s=None)


@dataclass(frozen=True)
class Tally:
    """What a process ended since it started: tasks per outcome (in ``WORKER_OUTCOMES`` order),
    and the histogram of the seconds of those it ran (counts per bucket of ``BUCKETS_S`` then
    +Inf, and their sum)."""

    outcomes: tuple[int, ...] = (0,) * len(WORKER_OUTCOMES)
    buckets: tuple[int, ...] = (0,) * (len(BUCKETS_S) + 1)
    seconds: float = 0.0

    def minus(self, before: Tally) -> Tally:
        return Tally(tuple(a - b for a, b in zip(self.outcomes, before.outcomes, strict=True)),
                     tuple(a - b for a, b in zip(self.buckets, before.buckets, strict=True)),
                     self.seconds - before.seconds)


NOTHING = Tally()


class StatusBoard:
    """One process's status board (shared memory, written by the process only); pass it to
    the process as an argument at start (spawn pickles it)."""

    def __init__(self, mp: BaseContext) -> None:
        self._shared = mp.RawValue(_Shared)

    # ---- the pool process (the only writer) -----------------------------------------
    def mark_ready(self) -> None:
        """Start-up is over (models loaded): a death from now on is not a start-up failure."""
        self._shared.ready = 1

    def start(self, task_id: str, started_s: float, due_s: float | None, trace: str | None = None) -> None:
        s = self._shared
        s.seq += 1
        s.task_id = task_id.encode()[:_ID_BYTES]
        s.trace = (trace or "").encode()[:tracing.MAX_CHARS]
        s.started_s = started_s
        s.due_s = NO_DEADLINE if due_s is None else due_s
        s.seq += 1

    def hold(self, tasks: int) -> None:
        """The process now holds ``tasks`` (running and waiting; one aligned word: no sequence)."""
        self._shared.held = tasks

    def finish(self, outcome: str, seconds: float, held: int) -> None:
        """The running task ended with ``outcome`` (of ``WORKER_OUTCOMES``) after ``seconds``;
        ``held`` tasks are left."""
        s = self._shared
        s.seq += 1
        s.task_id = b""
        s.held = held
        s.outcomes[_OUTCOME_INDEX[outcome]] += 1
        s.buckets[bisect_left(BUCKETS_S, seconds)] += 1
        s.seconds += seconds
        s.seq += 1

    def ended(self, outcome: str) -> None:
        """A task ended with ``outcome`` without running (cancelled or past its deadline before it started)."""
        s = self._shared
        s.seq += 1
        s.outcomes[_OUTCOME_INDEX[outcome]] += 1
        s.seq += 1

    # ---- the supervisor ----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._shared.ready)

    def read(self) -> Running:
        s = self._shared
        for _ in range(READ_ATTEMPTS):
            before = s.seq
            if before % 2:
                continue
            task_id, started_s, due_s, held, trace = s.task_id, s.started_s, s.due_s, s.held, s.trace
            if s.seq == before:
                return Running(task_id=task_id.decode(errors="replace"), started_s=started_s,
                               due_s=None if due_s == NO_DEADLINE else due_s, held=held,
                               trace=trace.decode(errors="replace"))
        return IDLE  # the writer is mid-update every time we looked: a moment later it will not be

    def tally(self) -> Tally | None:
        """The running totals; None if the writer was mid-update every time (look again later)."""
        s = self._shared
        for _ in range(READ_ATTEMPTS):
            before = s.seq
            if before % 2:
                continue
            tally = Tally(tuple(s.outcomes), tuple(s.buckets), s.seconds)
            if s.seq == before:
                return tally
        return None
