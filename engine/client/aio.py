"""The asyncio client: the same core as ``Client``, driven by the event loop.

Everything runs in the loop's thread, so the socket has one owner. A reader task
receives answers; a timer task does heartbeats, busy retries and timeouts.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import zmq
import zmq.asyncio

from .. import handshake
from ..aiowait import within
from ..errors import BrokerUnavailable, EngineError, TaskTimeout
from ..handshake import HandshakeWatch
from ..security import PeerKeys, client_keys
from ..sockutil import dealer
from .core import HEARTBEAT_INTERVAL_S, TIMEOUT_S, ClientCore, Result, complete


class AsyncClient:
    """``async with AsyncClient(address) as c: result = await c.process(data, "grayscale")``."""

    def __init__(self, address: str = "tcp://127.0.0.1:5555", *, timeout_s: float = TIMEOUT_S,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S, retry_busy: bool = True,
                 validate: bool = True, context: zmq.asyncio.Context | None = None, keys: PeerKeys | None = None,
                 shared_memory: bool = True) -> None:
        self.address = address
        self._keys = client_keys(keys)  # CURVE: keys=, else ENGINE_CLIENT_KEY + ENGINE_BROKER_KEY, else plaintext
        self._core = ClientCore(address=address, heartbeat_interval_s=heartbeat_interval_s,
                                timeout_s=timeout_s, retry_busy=retry_busy, validate=validate,
                                shared_memory=shared_memory and self._keys is None)
        self._ctx = context or zmq.asyncio.Context.instance()
        self._routing_id = self._core.routing_id
        self._sock: zmq.asyncio.Socket | None = None
        self._mon: zmq.asyncio.Socket | None = None  # the socket's handshake events
        self._handshakes = HandshakeWatch(role="client", curve=self._keys is not None, address=address)
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._closed = False

    async def start(self) -> AsyncClient:
        self._open()
        self._core.outbox.append(self._core.greeting())
        self._flush()
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._timer()),
                       asyncio.ensure_future(self._watch())]
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def submit(self, data: bytes | bytearray, pipeline: str | list, *, options: dict | None = None,
               timeout_s: float | None = None) -> asyncio.Future:
        """Send one image; await the future for a ``Result`` (or the task's error)."""
        if self._closed or self._sock is None:
            raise BrokerUnavailable("the client is not started, or closed")
        future = asyncio.get_running_loop().create_future()
        task_id = self._core.new_task_id()
        try:
            self._core.submit(task_id, data, pipeline, future, options=options, timeout_s=timeout_s)
        except EngineError as exc:  # a bad pipeline or input fails its future, as in Client
            future.set_exception(exc)
            return future

        def cancelled(f: asyncio.Future) -> None:
            if f.cancelled():
                self._cancel(task_id)

        future.add_done_callback(cancelled)
        if (timeout_s is not None and timeout_s < self._core.interval_s) or self._core.unreachable:
            self._wake.set()  # the timer may sleep past this deadline (or its early answer)
        self._flush()
        return future

    async def process(self, data: bytes, pipeline: str | list, **kwargs: Any) -> Result:
        return await self.submit(data, pipeline, **kwargs)

    async def map(self, items: Iterable[bytes], pipeline: str | list, *, window: int = 16,
                  **kwargs: Any) -> AsyncIterator[Result]:
        """Results in input order with at most ``window`` in flight (errors are raised)."""
        inflight: list[asyncio.Future] = []
        try:
            for data in items:
                inflight.append(self.submit(data, pipeline, **kwargs))
                if len(inflight) >= window:
                    yield await inflight.pop(0)
            while inflight:
                yield await inflight.pop(0)
        finally:
            for future in inflight:
                future.cancel()

    async def info(self, timeout_s: float = 5.0, *, history: bool = False) -> dict:
        """The broker's INFO; with ``history``, its last minutes of samples too (``history`` key).
        Raises as ``Client.info``: ``TaskTimeout``, or ``BrokerUnavailable`` sooner when nothing listens."""
        future = asyncio.get_running_loop().create_future()
        self._core.request_info(future, {"history": True} if history else None)
        self._wake.set()  # the timer answers it early if nothing listens
        self._flush()
        try:
            return await within(future, timeout_s)
        except asyncio.TimeoutError:
            raise TaskTimeout(f"the broker at {self.address} did not answer INFO within {timeout_s} s") from None

    @property
    def stats(self) -> dict:
        return dict(self._core.stats)

    @property
    def shared_memory(self) -> bool:
        """As ``Client.shared_memory``."""
        return self._core.shared_memory

    @property
    def unavailable(self) -> str | None:
        """Why no broker can take a request now, when that is known, else None (``ClientCore.unavailable``)."""
        return self._core.unavailable()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        complete(self._core.fail_all(lambda: BrokerUnavailable("the client was closed")))
        self._core.close_segments()
        if self._sock is not None:
            sock, mon = self._opened()
            sock.send_multipart(self._core.goodbye())
            handshake.stop(sock, mon)
            sock.close(linger=100)
            self._sock = None

    # ---- internals -------------------------------------------------------------------
    def _open(self) -> None:
        self._sock, self._mon = dealer(self._ctx, self.address, self._routing_id, keys=self._keys, sndhwm=0,
                                       monitor=True)

    def _opened(self) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
        """The socket and its monitor, which ``_open`` sets together; the reader, watcher and timer
        tasks run only between ``start`` (which opens them) and ``close`` (which cancels the tasks first)."""
        assert self._sock is not None and self._mon is not None, "used only between start() and close()"
        return self._sock, self._mon

    def _cancel(self, task_id: str) -> None:
        self._core.cancel(task_id)
        self._flush()

    def _flush(self) -> None:
        outbox = self._core.outbox
        while outbox and self._sock is not None:
            self._sock.send_multipart(outbox.popleft(), copy=False)  # never blocks: sndhwm is 0

    async def _read(self) -> None:
        while True:
            sock = self._opened()[0]
            try:
                frames = await sock.recv_multipart(copy=False)
            except zmq.ZMQError:
                if sock is self._sock:
                    raise
                continue  # the timer replaced the socket under us
            pace = self._core.pace
            complete(self._core.on_message(frames))
            if self._core.pace is not pace:  # the broker's own pace: the timer may sleep past our next beat
                self._wake.set()
            self._flush()

    async def _watch(self) -> None:
        """Handshake verdicts: a refused key fails the outstanding tasks at once, with the reason."""
        while True:
            frames = await self._opened()[1].recv_multipart()
            complete(self._core.on_handshake(self._handshakes.feed(frames)))
            if self._handshakes.unreachable != self._core.unreachable:
                self._core.on_connection(self._handshakes.unreachable)
                self._wake.set()  # the timer may answer waiting requests early

    async def _timer(self) -> None:
        core = self._core
        while True:
            delay_s = max(0.0, core.next_wakeup_s() - time.monotonic())
            try:
                await within(self._wake.wait(), delay_s + 0.001)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            complete(core.on_tick())
            if core.take_reconnect():
                for i in (0, 2):  # the reader and the watcher wait on the sockets being replaced
                    self._tasks[i].cancel()
                sock, mon = self._opened()
                handshake.stop(sock, mon)
                sock.close(linger=0)
                self._open()
                self._tasks[0] = asyncio.ensure_future(self._read())
                self._tasks[2] = asyncio.ensure_future(self._watch())
            self._flush()
