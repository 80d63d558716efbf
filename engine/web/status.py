"""Live status: one shared sampler asks the broker for INFO once a second, keeps the samples
in a ring (``status_ring``), and hands every new view to the status page's viewers
(``status_events`` streams them as server-sent events).

The sampler starts with the first look at the status (page, event stream or
``/api/v1/status``) and runs while someone watches and ``IDLE_STOP_S`` after the last look,
so the charts have history when someone comes back, and an unwatched gateway asks nothing.
Latency percentiles are the end-to-end times of the results that went through this gateway
(``EngineLink.process``); throughput comes from the broker's ``completed``/``failed``
counters, so it counts every client's tasks. The first INFO of a sampler run asks for the
broker's history too, which seeds the ring (``Ring.seed``): a batch run before the page was
opened is on its charts.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..errors import BusyError, EngineError
from .link import EngineLink
from .problems import WebError, describe
from .status_failures import grouped
from .status_ring import LATENCY_WINDOW_S, LatencyTap, Ring
from .status_svg import line_chart

log = logging.getLogger("engine.web.status")

SAMPLE_INTERVAL_S = 1.0
WINDOW_S = 30.0  # the headline throughput is averaged over this many seconds of samples
MAX_VIEWERS = 32  # open event streams; one more is refused with 503
IDLE_STOP_S = 600.0  # the sampler stops this long after the last look (no viewer, no request)
VIEWER_BACKLOG = 4  # views queued for a slow viewer before its oldest is dropped
HOST_RESOURCES_NOTE = ("CPU and memory are each worker host's own, from its latest heartbeat: CPU busy over the "
                       "last heartbeat interval, all cores together; memory in use (total less available) of its "
                       "total. \"—\" means the worker does not report them (an older version, or a host "
                       "without /proc).")
GIB = 1024 ** 3
# What the "broker down" banner says to do, under the error.
BROKER_DOWN_ADVICE = ("Start the broker with its workers: engine-broker --local-workers 2 (or python -m engine.broker "
                      "--local-workers 2); make run starts a broker, two workers and these pages together. This "
                      "gateway is trying {broker} (its --broker flag or ENGINE_WEB_BROKER); the page reconnects by "
                      "itself.")


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
            "last_heartbeat_s_ago": heartbeat, "tasks_done": w.get("tasks_done", w.get("completed")),
            **_resources(w)}


def _resources(w: dict) -> dict:
    """A host's CPU and memory as INFO reports them, and as the page shows them ("—": not reported)."""
    cpu, used, total = w.get("cpu_percent"), w.get("mem_used_bytes"), w.get("mem_total_bytes")
    cpu = cpu if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None
    if not (isinstance(used, int) and isinstance(total, int) and 0 <= used <= total and total > 0):
        used = total = None
    return {"cpu_percent": cpu, "mem_used_bytes": used, "mem_total_bytes": total,
            "cpu": "—" if cpu is None else f"{cpu:.0f} %",
            "memory": "—" if used is None or total is None
            else f"{used / GIB:.1f} / {total / GIB:.1f} GiB ({100 * used / total:.0f} %)"}


class StatusMonitor:
    def __init__(self, link: EngineLink, *, interval_s: float = SAMPLE_INTERVAL_S,
                 max_viewers: int = MAX_VIEWERS) -> None:
        self.link = link
        self.interval_s = interval_s
        self.max_viewers = max_viewers
        self.ring = Ring()
        self.latency = LatencyTap()
        link.on_result = self.latency.record
        self._view: dict | None = None
        self._charts: tuple[tuple, dict[str, str]] | None = None
        self._view_at_s = 0.0
        self._sampler: asyncio.Task | None = None
        self._pending: asyncio.Future | None = None  # the INFO request under way, shared
        self._last_look_s = time.monotonic()
        self._seed = True  # the next INFO asks for the broker's history, to fill the ring's gap (``Ring.seed``)
        self.idle_stop_s = IDLE_STOP_S
        self._viewers: set[asyncio.Queue] = set()

    # -- the shared sampler -------------------------------------------------------------------
    def start(self) -> None:
        self._last_look_s = time.monotonic()
        if self._sampler is None or self._sampler.done():
            self._seed = self._seed or self._sampler is not None  # it stopped idle: fill the gap since
            self._sampler = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        for task in (self._sampler, self._pending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for queue in list(self._viewers):
            self._offer(queue, None)  # None: the gateway is stopping, end the stream

    async def _run(self) -> None:
        while self._viewers or time.monotonic() - self._last_look_s < self.idle_stop_s:
            started_s = time.monotonic()
            try:
                view = await self.sample()
            except Exception:
                log.exception("status sample failed")
            else:
                for queue in list(self._viewers):
                    self._offer(queue, view)
            await asyncio.sleep(max(0.05, self.interval_s - (time.monotonic() - started_s)))

    async def sample(self) -> dict:
        """Ask the broker now, add a sample to the ring, and return the new view (callers
        at the same moment share one INFO request)."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._sample())
        return await asyncio.shield(self._pending)

    async def _sample(self) -> dict:
        try:
            info = await self.link.info(history=self._seed)
        except EngineError as exc:
            self._seed = True  # the broker's history covers what this ring misses while it is away
            self.ring.add_gap()
            _status, code, message = describe(exc, broker=self.link.settings.broker)
            view = {"up": False, "code": code, "error": message, "broker": self.link.settings.broker,
                    "advice": BROKER_DOWN_ADVICE.format(broker=self.link.settings.broker),
                    "workers": [], "queue_depth": None, "in_flight": None, "tasks_done": None, "failed": None,
                    "throughput_per_s": None, "latency": {}, "cache": None,
                    "recent_failures": self._view.get("recent_failures", []) if self._view else []}
        else:
            view = self._view_of(info)
        view["latency_window_s"] = LATENCY_WINDOW_S
        view["host_resources"] = HOST_RESOURCES_NOTE
        view["sampled_at_unix_s"] = round(time.time(), 3)
        self._view, self._view_at_s = view, time.monotonic()
        return view

    def _view_of(self, info: dict) -> dict:
        if self._seed:
            self._seed = False
            self.ring.seed(info.get("history"))
        sample = self.ring.add_info(info, self.latency.percentiles())
        ops = info.get("ops")
        declared = ops if isinstance(ops, dict) else {}
        failures = grouped(info.get("recent_failures") or [], declared)
        cache = info.get("cache") if isinstance(info.get("cache"), dict) else None
        done = info.get("completed", info.get("tasks_done", 0))
        return {"up": True, "broker": self.link.settings.broker, "instance": info.get("broker"),
                "uptime_s": info.get("uptime_s"),
                "workers": [_worker(w) for w in info.get("workers", []) if isinstance(w, dict)],
                "queue_depth": info.get("queue_depth"), "in_flight": info.get("in_flight"),
                "tasks_done": done, "failed": info.get("failed"),
                "throughput_per_s": self.ring.mean("done_per_s", WINDOW_S) or 0.0,
                "latency": {"p50_ms": sample.p50_ms, "p95_ms": sample.p95_ms, "p99_ms": sample.p99_ms},
                "recent_failures": failures, "cache": cache}

    async def snapshot(self) -> dict:
        """The latest view (at most two sample intervals old); starts the sampler."""
        if self._view is None or time.monotonic() - self._view_at_s > 2 * self.interval_s:
            view = await self.sample()
        else:
            view = self._view
        self.start()
        return view

    def charts(self) -> dict[str, str]:
        """The three charts over the ring's samples, as SVG markup (drawn once per sample,
        whatever the number of viewers)."""
        key = (len(self.ring.samples), self.ring.samples[-1].at_unix_s if self.ring.samples else None)
        if self._charts is None or self._charts[0] != key:
            self._charts = (key, self._draw())
        return self._charts[1]

    def _draw(self) -> dict[str, str]:
        samples = list(self.ring.samples)
        times = [s.at_unix_s for s in samples]

        def col(name: str) -> list:
            return [getattr(s, name) for s in samples]

        return {
            "throughput": line_chart("chart-throughput", "Tasks per second", times,
                                     [("completed", col("done_per_s")), ("failed", col("failed_per_s"))],
                                     unit="tasks/s"),
            "latency": line_chart("chart-latency", "Latency percentiles of this gateway's results", times,
                                  [("p50", col("p50_ms")), ("p95", col("p95_ms")), ("p99", col("p99_ms"))],
                                  unit="ms"),
            "queue": line_chart("chart-queue", "Queue depth and tasks in flight", times,
                                [("queued", col("queue_depth")), ("in flight", col("in_flight"))], unit="tasks"),
        }

    # -- viewers (the event streams) ----------------------------------------------------------
    def check_room(self) -> None:
        """Raise 503 when ``max_viewers`` streams are open."""
        if len(self._viewers) >= self.max_viewers:
            raise WebError(503, BusyError.code, f"The status page already has {self.max_viewers} live viewers "
                           "(the gateway's limit); close one, or reload this page later for a fixed snapshot.")

    def subscribe(self) -> asyncio.Queue:
        """A queue that receives every new view (``None`` when the gateway stops)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=VIEWER_BACKLOG)
        self._viewers.add(queue)
        self.start()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._viewers.discard(queue)

    @property
    def sampling(self) -> bool:
        return self._sampler is not None and not self._sampler.done()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @staticmethod
    def _offer(queue: asyncio.Queue, view: dict | None) -> None:
        if queue.full():
            queue.get_nowait()  # a slow viewer misses a frame rather than holding memory
        queue.put_nowait(view)
