"""The gateway: a ROUTER for the older deep-learning clients, a client of the broker.

One asyncio loop owns both sockets (the ROUTER and the engine's AsyncClient DEALER), so
each socket has one thread. Each request frame is checked (``wire.parse_request``),
submitted to the broker with the detection pipeline, and answered with one JSON frame on
the same route; every request gets an answer, a bad one an ``{"error": ...}``. At most
``max_in_flight`` requests wait on the engine at once; more are answered ``busy`` at once.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import zmq
import zmq.asyncio

from ..client.aio import AsyncClient
from ..errors import BrokerUnavailable, BusyError, DeadlineExceeded, TaskError, TaskTimeout
from . import wire

log = logging.getLogger("engine.dlgateway")

POLL_MS = 200  # how often the loop looks at its stop event when idle
HARD_LIMIT_FACTOR = 4  # frames over this many times max_request_bytes drop the connection (ZMQ_MAXMSGSIZE)


@dataclass(frozen=True)
class GatewaySettings:
    bind: str = "tcp://127.0.0.1:5561"  # beside the compat ROUTER on 5560
    connect: str = "tcp://127.0.0.1:5555"
    max_in_flight: int = 64
    max_request_bytes: int = wire.MAX_REQUEST_BYTES
    timeout_s: float = 30.0


class Gateway:
    def __init__(self, settings: GatewaySettings = GatewaySettings()) -> None:
        self.settings = settings
        self.stats = {"requests": 0, "answered": 0, "refused": 0, "failed": 0, "busy": 0}
        self._in_flight: set[asyncio.Task] = set()
        self._out: zmq.Socket | None = None  # the ROUTER, for plain sends (a ROUTER never blocks)

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then answer what is in flight and close."""
        s = self.settings
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        self._out = zmq.Socket.shadow(router.underlying)
        router.linger = 0
        router.maxmsgsize = HARD_LIMIT_FACTOR * s.max_request_bytes
        try:
            router.bind(s.bind)
            log.info("deep-learning gateway on %s, engine broker at %s", s.bind, s.connect)
            async with AsyncClient(s.connect, timeout_s=s.timeout_s) as client:
                while not stop.is_set():
                    if not await router.poll(POLL_MS):
                        continue
                    frames = await router.recv_multipart()
                    self._on_request(client, frames[:-1], frames[-1])
                if self._in_flight:
                    await asyncio.wait(self._in_flight, timeout=s.timeout_s)
        finally:
            self._out = None
            router.close(linger=0)
            ctx.term()
            log.info("gateway stopped: %s", self.stats)

    def _on_request(self, client: AsyncClient, route: list[bytes], raw: bytes) -> None:
        self.stats["requests"] += 1
        try:
            request = wire.parse_request(raw, max_bytes=self.settings.max_request_bytes)
        except wire.RequestError as exc:
            self.stats["refused"] += 1
            self._send(route, wire.error_json(exc.rid, exc.code, str(exc)))
            return
        if len(self._in_flight) >= self.settings.max_in_flight:
            self.stats["busy"] += 1
            self._send(route, wire.error_json(request.rid, BusyError.code,
                                              f"{len(self._in_flight)} requests are in flight, the limit: "
                                              "try again in a moment"))
            return
        task = asyncio.ensure_future(self._serve_one(client, route, request))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _serve_one(self, client: AsyncClient, route: list[bytes], request: wire.Request) -> None:
        try:
            result = await client.submit(request.image, wire.PIPELINE, timeout_s=self.settings.timeout_s)
        except TaskError as exc:
            body = wire.error_json(request.rid, exc.code, exc.message)
        except TaskTimeout:
            body = wire.error_json(request.rid, DeadlineExceeded.code,
                                   f"the engine did not answer within {self.settings.timeout_s} s; try again")
        except BrokerUnavailable as exc:
            body = wire.error_json(request.rid, BusyError.code, f"the engine is unavailable ({exc}); try again")
        else:
            self.stats["answered"] += 1
            self._send(route, wire.reply_json(request.rid, result.meta))
            return
        self.stats["failed"] += 1
        self._send(route, body)

    def _send(self, route: list[bytes], body: bytes) -> None:
        if self._out is not None:
            try:
                self._out.send_multipart([*route, body], flags=zmq.NOBLOCK)
            except zmq.Again:  # defensive: a ROUTER drops rather than blocks
                log.info("dropped an answer: the requester is not reading")
