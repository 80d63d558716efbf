"""Live status: the broker's INFO answer, normalised, plus throughput from recent samples."""
from __future__ import annotations

import time
from collections import deque

from ..errors import EngineError
from .link import EngineLink
from .problems import describe

WINDOW_S = 30.0  # throughput is averaged over this many seconds of samples


def _done(info: dict) -> int:
    for key in ("tasks_done", "completed"):
        if isinstance(info.get(key), int):
            return info[key]
    return 0


def _worker(w: dict) -> dict:
    free, in_flight = w.get("free"), w.get("in_flight")
    capacity = w.get("capacity")
    if capacity is None and isinstance(free, int) and isinstance(in_flight, int):
        capacity = free + in_flight
    busy = bool(w.get("busy", in_flight))
    heartbeat = w.get("last_heartbeat_s_ago", w.get("last_seen_s_ago"))
    return {"id": str(w.get("id", "?")), "host": w.get("host"), "pid": w.get("pid"), "capacity": capacity,
            "processes": w.get("processes"),
            "free": free, "in_flight": in_flight, "state": "draining" if w.get("draining") else
            ("busy" if busy else "idle"),
            "last_heartbeat_s_ago": heartbeat, "tasks_done": w.get("tasks_done", w.get("completed"))}


class StatusMonitor:
    def __init__(self, link: EngineLink) -> None:
        self.link = link
        self._samples: deque[tuple[float, int]] = deque()

    async def snapshot(self) -> dict:
        """What the status page shows; ``up`` is False (with ``error``) when the broker is away."""
        now = time.monotonic()
        try:
            info = await self.link.info()
        except EngineError as exc:
            _status, code, message = describe(exc, broker=self.link.settings.broker)
            return {"up": False, "code": code, "error": message, "broker": self.link.settings.broker,
                    "workers": [], "queue_depth": None, "tasks_done": None, "throughput_per_s": None}
        done = _done(info)
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > WINDOW_S:
            self._samples.popleft()
        (t0, d0) = self._samples[0]
        rate = (done - d0) / (now - t0) if now > t0 and done >= d0 else 0.0
        cache = info.get("cache") if isinstance(info.get("cache"), dict) else None
        return {"up": True, "broker": self.link.settings.broker, "instance": info.get("broker"),
                "uptime_s": info.get("uptime_s"),
                "workers": [_worker(w) for w in info.get("workers", []) if isinstance(w, dict)],
                "queue_depth": info.get("queue_depth"), "in_flight": info.get("in_flight"),
                "tasks_done": done, "failed": info.get("failed"),
                "throughput_per_s": round(rate, 3), "cache": cache}
