"""Peak memory of one pool process, task by task (Linux): reset its high-water mark, run a
task, read the mark. The test of operation memory and ``tools/op_peak.py`` share these."""
from __future__ import annotations

from pathlib import Path

import psutil

WAIT_S = 60.0


def pool_process(worker_pid: int, timeout_s: float = WAIT_S) -> psutil.Process:
    """The one pool process of a worker started with ``--processes 1`` (not its resource tracker)."""
    supervisor = psutil.Process(worker_pid)
    found = [p for p in supervisor.children() if "resource_tracker" not in " ".join(p.cmdline())]
    assert len(found) == 1, [p.cmdline() for p in found]
    return found[0]


def status_bytes(pid: int, field: str) -> int:
    """A size line of /proc/PID/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak(pid: int) -> int:
    """Set the process's peak RSS (VmHWM) back to its RSS now; returns that RSS in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_bytes(pid, "VmRSS")


def task_peak(client, pid: int, data: bytes, pipeline, timeout_s: float = WAIT_S) -> tuple[object, int, int]:
    """(the result or the task's exception, RSS before in bytes, peak RSS during it in bytes)."""
    before = reset_peak(pid)
    try:
        outcome = client.process(data, pipeline, timeout_s=timeout_s)
    except Exception as exc:
        outcome = exc
    return outcome, before, status_bytes(pid, "VmHWM")
