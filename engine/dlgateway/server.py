"""The gateway: a ROUTER for the older deep-learning clients, a client of the broker.

One asyncio loop owns both sockets (the ROUTER and the engine's AsyncClient DEALER), so
each socket has one thread. Each request frame is checked (``wire.parse_request``),
submitted to the broker with the detection pipeline, and answered with one JSON frame on
the same route; every request gets an answer, a bad one an ``{"error": ...}``. At most
``max_in_flight`` requests wait on the engine at once; more are answered ``busy`` at once.
While no broker can take them (``AsyncClient.unavailable``: nothing listens at a local
address, or none has answered for longer than its liveness) requests are answered
``broker_unavailable`` at once, and the gateway logs when that starts and when it ends.

What a flood of large frames can make it hold or cost is bounded. libzmq drops a connection
whose frame is over ``frame_limit`` (ZMQ_MAXMSGSIZE) before reading it, and queues at most
``QUEUED_FRAMES`` per connection (ZMQ_RCVHWM) before it stops reading that connection. A frame
up to ``wire.LARGE_BYTES`` is decoded at once (a few ms); a larger one is read by
``wire.parse_large`` one step (``wire.STEP_BYTES``) per turn of the loop, so the loop goes back
to its socket and to the other requests between steps; and a large frame that would take the
bytes being read over ``decode_limit`` is answered ``busy`` at once, unread. A peer's 32 MiB
frame thus holds up the others' requests for a step (~2 ms) per turn, not for its whole decode.
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
QUEUED_FRAMES = 1  # ZMQ_RCVHWM: frames libzmq queues per connection before it stops reading it


@dataclass(frozen=True)
class GatewaySettings:
    bind: str = "tcp://127.0.0.1:5561"  # beside the compat ROUTER on 5560
    connect: str = "tcp://127.0.0.1:5555"
    max_in_flight: int = 64
    max_request_bytes: int = wire.MAX_REQUEST_BYTES  # larger frames are answered with an error, unread
    max_frame_bytes: int = 0  # ZMQ_MAXMSGSIZE, larger frames drop the connection; 0: 3/2 of max_request_bytes
    max_decoding_bytes: int = 0  # large frames being read at once; 0: 2 x max_request_bytes
    timeout_s: float = 30.0

    @property
    def frame_limit(self) -> int:
        return self.max_frame_bytes or self.max_request_bytes * 3 // 2

    @property
    def decode_limit(self) -> int:
        return self.max_decoding_bytes or 2 * self.max_request_bytes


class Gateway:
    def __init__(self, settings: GatewaySettings = GatewaySettings()) -> None:
        self.settings = settings
        self.stats = {"requests": 0, "answered": 0, "refused": 0, "failed": 0, "busy": 0, "unavailable": 0}
        self._in_flight: set[asyncio.Task] = set()  # requests waiting on the engine
        self._decodes: set[asyncio.Task] = set()  # large frames being read a step per turn
        self._decoding_bytes = 0
        self._out: zmq.Socket | None = None  # the ROUTER, for plain sends (a ROUTER never blocks)
        self._down: str | None = None  # why no broker can take requests, as last logged

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then answer what is in flight and close."""
        s = self.settings
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        self._out = zmq.Socket.shadow(router.underlying)
        router.linger = 0
        router.rcvhwm = QUEUED_FRAMES
        router.maxmsgsize = s.frame_limit
        try:
            router.bind(s.bind)
            log.info("deep-learning gateway on %s, engine broker at %s", s.bind, s.connect)
            async with AsyncClient(s.connect, timeout_s=s.timeout_s) as client:
                while not stop.is_set():
                    self._watch_broker(client)
                    if not await router.poll(POLL_MS):
                        continue
                    frames = await router.recv_multipart(copy=False)
                    self._on_frame(client, [f.bytes for f in frames[:-1]], frames[-1])
                if self._decodes:
                    await asyncio.wait(self._decodes, timeout=s.timeout_s)
                if self._in_flight:
                    await asyncio.wait(self._in_flight, timeout=s.timeout_s)
        finally:
            self._out = None
            router.close(linger=0)
            ctx.term()
            log.info("gateway stopped: %s", self.stats)

    def _watch_broker(self, client: AsyncClient) -> str | None:
        """Why no broker can take requests now (None: it can, or it is too early to tell); its
        loss and its return are logged once each."""
        down = client.unavailable
        if down and not self._down:
            log.warning("the engine broker is unavailable (%s): answering %s at once until it is back", down,
                        BrokerUnavailable.code)
        elif self._down and not down:
            log.info("the engine broker at %s is back", self.settings.connect)
        self._down = down
        return down

    def _on_frame(self, client: AsyncClient, route: list[bytes], body: zmq.Frame) -> None:
        """Decode a small frame now (one over the limit is refused unread), start reading a
        large one when there is room, else answer busy at once."""
        self.stats["requests"] += 1
        size, limit = len(body), self.settings.max_request_bytes
        if size <= wire.LARGE_BYTES or size > limit:
            try:
                parsed: wire.Request | wire.RequestError = wire.parse_request(body.buffer, max_bytes=limit)
            except wire.RequestError as exc:
                parsed = _untraced(exc)
            self._admit(client, route, parsed)
            return
        if self._decoding_bytes and self._decoding_bytes + size > self.settings.decode_limit:
            self.stats["busy"] += 1
            self._send(route, wire.error_json(None, BusyError.code,
                                              f"{self._decoding_bytes / 2**20:.0f} MiB of requests are being "
                                              f"read, the limit: try again in a moment"))
            return
        self._decoding_bytes += size
        self._track(self._decodes, self._read_large(client, route, body.buffer))

    async def _read_large(self, client: AsyncClient, route: list[bytes], raw: memoryview) -> None:
        size, steps = len(raw), wire.parse_large(raw, max_bytes=self.settings.max_request_bytes)
        del raw  # the generator holds the frame until it is done
        try:
            while True:
                next(steps)
                await asyncio.sleep(0)  # the loop's turn: its socket and the other requests
        except StopIteration as done:
            parsed = done.value
        except wire.RequestError as exc:
            parsed = _untraced(exc)
        finally:
            self._decoding_bytes -= size
        del steps
        self._admit(client, route, parsed)

    def _admit(self, client: AsyncClient, route: list[bytes], parsed: wire.Request | wire.RequestError) -> None:
        if isinstance(parsed, wire.RequestError):
            self.stats["refused"] += 1
            self._send(route, wire.error_json(parsed.rid, parsed.code, str(parsed)))
            return
        down = self._watch_broker(client)
        if down:
            self.stats["unavailable"] += 1
            self._send(route, wire.error_json(parsed.rid, BrokerUnavailable.code,
                                              f"the engine is unavailable ({down}); try again later"))
            return
        if len(self._in_flight) >= self.settings.max_in_flight:
            self.stats["busy"] += 1
            self._send(route, wire.error_json(parsed.rid, BusyError.code,
                                              f"{len(self._in_flight)} requests are in flight, the limit: "
                                              "try again in a moment"))
            return
        self._track(self._in_flight, self._serve_one(client, route, parsed))

    @staticmethod
    def _track(tasks: set[asyncio.Task], coro) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _serve_one(self, client: AsyncClient, route: list[bytes], request: wire.Request) -> None:
        try:
            result = await client.submit(request.image, wire.PIPELINE, timeout_s=self.settings.timeout_s)
        except TaskError as exc:
            body = wire.error_json(request.rid, exc.code, exc.message)
        except TaskTimeout:
            body = wire.error_json(request.rid, DeadlineExceeded.code,
                                   f"the engine did not answer within {self.settings.timeout_s} s; try again")
        except BrokerUnavailable as exc:
            body = wire.error_json(request.rid, BrokerUnavailable.code, f"the engine is unavailable ({exc}); try again")
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


def _untraced(exc: wire.RequestError) -> wire.RequestError:
    """A copy of ``exc`` that was never raised: the caught one's traceback holds the frames
    that read the request, and with them its bytes, for as long as the error is kept."""
    return wire.RequestError(exc.rid, str(exc), code=exc.code)
