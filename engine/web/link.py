"""The gateway's one connection to the broker: an ``engine.AsyncClient`` on the event loop.

Nothing here blocks on ZeroMQ: the asyncio client does the socket work. ``process``
limits how many tasks the gateway keeps at the broker at once, and refuses quickly
(``BrokerUnavailable``) when the broker has not answered a short ``info`` probe, so a
page says "the engine is down" within seconds instead of waiting a whole task timeout.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .. import tracing
from ..errors import BrokerUnavailable, TaskTimeout
from .settings import WebSettings

PROBE_FRESH_S = 2.0  # a successful answer this recent counts as "the broker is up"


class EngineLink:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._last_ok = 0.0  # time.monotonic() of the last answer from the broker
        self._probe: asyncio.Task | None = None
        self.on_result: Callable[[float], None] | None = None  # told each result's milliseconds (status page)
        self.on_info: Callable[[dict], None] | None = None  # told each INFO answer (the workers' schema)

    async def start(self) -> None:
        from .. import AsyncClient

        self._client = AsyncClient(self.settings.broker, timeout_s=self.settings.task_timeout_s,
                                   heartbeat_interval_s=self.settings.heartbeat_interval_s)
        await self._client.start()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _require(self) -> Any:
        if self._client is None:
            raise BrokerUnavailable("the gateway has no engine client (not started, or shutting down)")
        return self._client

    async def info(self, *, history: bool = False) -> dict:
        """The broker's INFO answer, within ``broker_check_timeout_s`` (``history``: with its recent samples)."""
        client = self._require()
        try:
            answer = await client.info(timeout_s=self.settings.broker_check_timeout_s, history=history)
        except TaskTimeout:
            raise BrokerUnavailable(f"no answer from the broker at {self.settings.broker} within "
                                    f"{self.settings.broker_check_timeout_s:g} s") from None
        self._last_ok = time.monotonic()
        if self.on_info is not None:
            self.on_info(answer)
        return answer

    async def ensure_up(self) -> None:
        """Raise BrokerUnavailable unless the broker answered recently (one probe at a time)."""
        if time.monotonic() - self._last_ok < PROBE_FRESH_S:
            return
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self.info())
        await asyncio.shield(self._probe)

    async def process(self, data: bytes, pipeline: str, *, trace: str | None = None) -> tuple[bytes, dict]:
        """The result bytes and meta of one image; raises engine errors."""
        await self.ensure_up()
        async with self._slots:
            started = time.perf_counter()
            options = {tracing.KEY: trace} if trace else None
            result = await self._require().process(data, pipeline, options=options)
        self._last_ok = time.monotonic()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self.on_result is not None:
            self.on_result(elapsed_ms)
        meta = dict(result.meta or {})
        meta.setdefault("elapsed_ms", round(elapsed_ms, 3))
        return bytes(result.data), meta
