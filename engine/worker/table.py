"""The supervisor's socket-free core: its pool processes, what each runs, and when to kill one.

The supervisor is off the data path: tasks go from the broker straight to each pool
process and back. It learns what a process runs from that process's ``StatusBoard`` and
decides, with no socket and no clock of its own (``now_s`` is passed in):

* a running task past its deadline: answer ``deadline_exceeded`` for it now, kill the
  process ``deadlines.GRACE_S`` later if it is still on that task;
* a running task the broker cancelled: the same, without the answer (the broker has
  answered the client already);
* a task past the worker's task timeout: answer ``deadline_exceeded`` and kill at once;
* a dead process: name the task it was running (if nobody answered for it), so the
  broker retries that one task and requeues the others it held without blame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import deadlines
from .board import IDLE, Running

WATCH_INTERVAL_S = 1.0  # how often the supervisor looks at busy processes when nothing is due sooner


@dataclass(eq=False)
class Proc:
    """One pool process as its supervisor knows it."""

    ident: str  # its routing id at the broker
    handle: Any  # multiprocessing.Process (only its pid is read here)
    board: Any  # StatusBoard (anything with read() -> Running)
    abandoned_id: str = ""  # the task answered for it (deadline, cancel) while it still ran
    abandoned_s: float = 0.0
    abandoned_why: str = ""
    kill_reason: str = ""  # set once it is being killed
    answered_id: str = ""  # a task the supervisor answered for (timeout, deadline): not to be blamed on death

    @property
    def pid(self) -> int:
        return self.handle.pid or 0


@dataclass(frozen=True)
class Answer:
    """Answer ``code`` for ``task_id`` on behalf of process ``proc`` (it cannot: it is busy)."""

    proc: Proc
    task_id: str
    code: str
    message: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Kill:
    proc: Proc
    reason: str


@dataclass
class ProcessTable:
    task_timeout_s: float
    grace_s: float = deadlines.GRACE_S
    procs: dict[str, Proc] = field(default_factory=dict)

    def add(self, proc: Proc) -> None:
        self.procs[proc.ident] = proc

    def remove(self, ident: str) -> Proc | None:
        return self.procs.pop(ident, None)

    def running(self, proc: Proc) -> Running:
        return proc.board.read() if proc.kill_reason == "" else IDLE

    def cancel(self, task_id: str, now_s: float) -> Proc | None:
        """The broker cancelled ``task_id``: the process running it (if any) is abandoned."""
        for proc in self.procs.values():
            if not proc.kill_reason and proc.abandoned_id != task_id and proc.board.read().task_id == task_id:
                self._abandon(proc, task_id, now_s, "its task was cancelled")
                return proc
        return None

    def _busy(self):
        """(process, what it runs) for every process running a task and not being killed."""
        for proc in self.procs.values():
            if not proc.kill_reason:
                run = proc.board.read()
                if run.task_id:
                    yield proc, run

    def watch(self, now_s: float, deadline_code: str) -> list[Answer | Kill]:
        """What to do now about every busy process: answers first, then kills."""
        out: list[Answer | Kill] = []
        for proc, run in list(self._busy()):
            if run.task_id == proc.abandoned_id:
                if now_s - proc.abandoned_s >= self.grace_s:
                    out.append(self._kill(proc, f"was still busy {self.grace_s:g} s after {proc.abandoned_why} "
                                                "and was killed"))
            elif now_s - run.started_s >= self.task_timeout_s:
                proc.answered_id = run.task_id
                out.append(Answer(proc, run.task_id, deadline_code,
                                  f"the task ran longer than the worker's task timeout of {self.task_timeout_s:g} s "
                                  "and was stopped (not retried); give it less work, or run workers with a longer "
                                  "--task-timeout-s", {"task_timeout_s": self.task_timeout_s}))
                out.append(self._kill(proc, f"ran past the task timeout of {self.task_timeout_s:g} s and was killed"))
            elif run.due_s is not None and now_s >= run.due_s:
                self._abandon(proc, run.task_id, now_s, "its task's deadline")
                proc.answered_id = run.task_id
                out.append(Answer(proc, run.task_id, deadline_code,
                                  f"the task's deadline passed while running in process {proc.pid}; it was "
                                  "abandoned (not retried: give it a longer deadline_ms)"))
        return out

    def next_wake_s(self, now_s: float) -> float:
        """When ``watch`` next has something to do, at most ``WATCH_INTERVAL_S`` away while a
        process is busy (a task that starts between two looks is seen at the next)."""
        wake = float("inf")
        for proc, run in self._busy():
            if run.task_id == proc.abandoned_id:
                wake = min(wake, proc.abandoned_s + self.grace_s)
            else:
                wake = min(wake, run.started_s + self.task_timeout_s,
                           run.due_s if run.due_s is not None else float("inf"), now_s + WATCH_INTERVAL_S)
        return wake

    def death(self, proc: Proc, exitcode: int | None) -> tuple[str, str]:
        """A process died: (how, in words; the task to blame, "" if none or answered already)."""
        how = proc.kill_reason or (f"was killed by signal {-exitcode}" if exitcode and exitcode < 0
                                   else f"exited with code {exitcode}")
        task_id = proc.board.read().task_id
        if task_id and task_id in (proc.abandoned_id, proc.answered_id):
            task_id = ""
        return how, task_id

    def _abandon(self, proc: Proc, task_id: str, now_s: float, why: str) -> None:
        proc.abandoned_id, proc.abandoned_s, proc.abandoned_why = task_id, now_s, why

    @staticmethod
    def _kill(proc: Proc, reason: str) -> Kill:
        proc.kill_reason = reason
        return Kill(proc, reason)
