"""The host's CPU and memory, as a worker host's supervisor reports them with its heartbeats.

Read from ``/proc/stat`` and ``/proc/meminfo`` (two small reads per heartbeat, no dependency):
CPU is the share of all cores busy since the previous reading (the first one is taken when the
supervisor starts), memory is MemTotal less MemAvailable, of MemTotal. Where there is no
``/proc`` (not Linux) or it cannot be read, the fields are left out and the status page shows "—".
"""
from __future__ import annotations

from pathlib import Path

PROC_STAT = Path("/proc/stat")
PROC_MEMINFO = Path("/proc/meminfo")
IDLE_COLUMNS = (3, 4)  # idle, iowait: of user nice system idle iowait irq softirq steal (guest is in user)
TIME_COLUMNS = 8


class HostLoad:
    def __init__(self, stat: Path = PROC_STAT, meminfo: Path = PROC_MEMINFO) -> None:
        self._stat = stat
        self._meminfo = meminfo
        self._last = self._cpu_times()  # (busy, total) jiffies, or None

    def fields(self) -> dict:
        """``cpu_percent``, ``mem_used_bytes``, ``mem_total_bytes`` for a heartbeat: those it could read."""
        out: dict = {}
        now = self._cpu_times()
        if now is not None and self._last is not None and now[1] > self._last[1]:
            busy, total = now[0] - self._last[0], now[1] - self._last[1]
            out["cpu_percent"] = round(min(100.0, max(0.0, 100.0 * busy / total)), 1)
        if now is not None:
            self._last = now
        memory = self._memory()
        if memory is not None:
            out["mem_used_bytes"], out["mem_total_bytes"] = memory
        return out

    def _cpu_times(self) -> tuple[int, int] | None:
        try:
            with self._stat.open("rb") as f:
                first = f.readline().split()
            times = [int(v) for v in first[1:1 + TIME_COLUMNS]]
        except (OSError, ValueError):
            return None
        if first[:1] != [b"cpu"] or len(times) < IDLE_COLUMNS[-1] + 1:
            return None
        total = sum(times)
        return total - sum(times[i] for i in IDLE_COLUMNS), total

    def _memory(self) -> tuple[int, int] | None:
        kib: dict[bytes, int] = {}
        try:
            with self._meminfo.open("rb") as f:
                for line in f:
                    name, _, rest = line.partition(b":")
                    if name in (b"MemTotal", b"MemAvailable"):
                        kib[name] = int(rest.split()[0])
                        if len(kib) == 2:
                            break
        except (OSError, ValueError, IndexError):
            return None
        total, available = kib.get(b"MemTotal"), kib.get(b"MemAvailable")
        if not total or available is None:
            return None
        return max(0, total - available) * 1024, total * 1024
