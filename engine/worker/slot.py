"""What a pool process is running, in shared memory: its supervisor reads it without a message.

Each pool process owns one ``TaskSlot`` (a ctypes structure in shared memory, made by
the supervisor before the process starts). The process writes it when a task starts and
clears it when the task ends; the supervisor reads it to find a task's process (cancel),
to see a task run past its deadline or the task timeout, and to name the task a dead
process was running. One writer; a sequence number (odd while writing) lets the reader
retry a torn read. Times are ``time.monotonic()`` seconds, one clock for all processes of
a host (CLOCK_MONOTONIC).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from multiprocessing.context import BaseContext

from .. import tracing
from ..protocol import MAX_TASK_ID_CHARS

NO_DEADLINE = 0.0
_ID_BYTES = MAX_TASK_ID_CHARS * 4  # UTF-8: at most 4 bytes per character
READ_ATTEMPTS = 100


class _Shared(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("started_s", ctypes.c_double), ("due_s", ctypes.c_double),
                ("tasks_done", ctypes.c_uint64), ("task_id", ctypes.c_char * _ID_BYTES),
                ("trace", ctypes.c_char * tracing.MAX_CHARS), ("ready", ctypes.c_uint8)]


@dataclass(frozen=True)
class Running:
    """A snapshot of a slot: the task in progress (``task_id`` empty when idle)."""

    task_id: str
    started_s: float
    due_s: float | None
    tasks_done: int
    trace: str = ""  # the task's trace id, for the supervisor's log lines


IDLE = Running(task_id="", started_s=0.0, due_s=None, tasks_done=0)


class TaskSlot:
    """One process's slot; pass it to the process as an argument at start (spawn pickles it)."""

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

    def finish(self) -> None:
        s = self._shared
        s.seq += 1
        s.task_id = b""
        s.tasks_done += 1
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
            task_id, started_s, due_s, done, trace = s.task_id, s.started_s, s.due_s, s.tasks_done, s.trace
            if s.seq == before:
                return Running(task_id=task_id.decode(errors="replace"), started_s=started_s,
                               due_s=None if due_s == NO_DEADLINE else due_s, tasks_done=done,
                               trace=trace.decode(errors="replace"))
        return IDLE  # the writer is mid-update every time we looked: a moment later it will not be
