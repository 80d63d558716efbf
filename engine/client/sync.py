"""The blocking client: futures, bounded in-flight windows, for batch jobs and threads.

One background thread owns the DEALER socket. Other threads never touch it: they put
commands on a queue and write a byte to a pipe the IO thread polls (no busy waiting).
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import queue
import threading
import time
import uuid
from typing import Any, Iterable, Iterator

import zmq

from .. import handshake
from ..errors import BrokerUnavailable, TaskTimeout
from ..handshake import HandshakeWatch
from ..security import PeerKeys, client_keys
from ..sockutil import COPY_THRESHOLD_BYTES, NOBLOCK, recv_frames, send_frames
from ..wakeup import Wakeup
from .core import HEARTBEAT_INTERVAL_S, TIMEOUT_S, ClientCore, Result, complete

DEFAULT_WINDOW = 16


class Client:
    """Submit images to a broker. Thread-safe; use as a context manager::

        with Client("tcp://127.0.0.1:5555") as client:
            result = client.submit(jpeg_bytes, "grayscale").result()
            for r in client.map(images, "edge", window=32):
                ...
    """

    def __init__(self, address: str = "tcp://127.0.0.1:5555", *, timeout_s: float = TIMEOUT_S,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S, retry_busy: bool = True,
                 validate: bool = True, context: zmq.Context | None = None, keys: PeerKeys | None = None) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._keys = client_keys(keys)  # CURVE: keys=, else ENGINE_CLIENT_KEY + ENGINE_BROKER_KEY, else plaintext
        self._core = ClientCore(address=address, heartbeat_interval_s=heartbeat_interval_s,
                                timeout_s=timeout_s, retry_busy=retry_busy, validate=validate)
        self._ctx = context or zmq.Context.instance()
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wakeup = Wakeup()
        self._wake_pending = False  # set by a caller that fired the wake-up; cleared by the IO thread
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._io_loop, name="engine-client-io", daemon=True)
        self._thread.start()

    # ---- public API ------------------------------------------------------------------
    def submit(self, data: bytes, pipeline: str | list, *, options: dict | None = None,
               timeout_s: float | None = None) -> cf.Future:
        """Send one image; the future's result is a ``Result`` or raises an engine error."""
        if self._closed:
            raise BrokerUnavailable("the client is closed")
        future: cf.Future = cf.Future()
        task_id = self._core.new_task_id()
        future.add_done_callback(lambda f: f.cancelled() and self._command(("cancel", task_id)))
        self._command(("submit", task_id, data, pipeline, options, timeout_s, future))
        return future

    def process(self, data: bytes, pipeline: str | list, **kwargs: Any) -> Result:
        """Submit and wait: the result, or the task's error raised."""
        return self.submit(data, pipeline, **kwargs).result()

    def map(self, items: Iterable[bytes], pipeline: str | list, *, window: int = DEFAULT_WINDOW,
            return_exceptions: bool = False, **kwargs: Any) -> Iterator[Result | BaseException]:
        """Results in input order, with at most ``window`` tasks in flight.

        A failed task raises its error where its result would be (and the tasks still in
        flight are cancelled), unless ``return_exceptions`` yields the error instead.
        """
        inflight: collections.deque[cf.Future] = collections.deque()
        source = iter(items)
        try:
            for data in source:
                inflight.append(self.submit(data, pipeline, **kwargs))
                if len(inflight) >= window:
                    yield self._outcome(inflight.popleft(), return_exceptions)
            while inflight:
                yield self._outcome(inflight.popleft(), return_exceptions)
        finally:
            for future in inflight:
                future.cancel()

    def imap_unordered(self, items: Iterable[bytes], pipeline: str | list, *, window: int = DEFAULT_WINDOW,
                       return_exceptions: bool = False, **kwargs: Any) -> Iterator[Result | BaseException]:
        """Results as they come, with at most ``window`` tasks in flight.

        Each future reports itself on one queue when done, so waiting costs O(1) per task
        (``concurrent.futures.wait`` would visit every future in flight each time).
        """
        inflight: set[cf.Future] = set()
        finished: queue.SimpleQueue = queue.SimpleQueue()
        source = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) < window:
                    try:
                        future = self.submit(next(source), pipeline, **kwargs)
                    except StopIteration:
                        exhausted = True
                        break
                    inflight.add(future)
                    future.add_done_callback(finished.put)
                if not inflight:
                    return
                future = finished.get()
                inflight.discard(future)
                yield self._outcome(future, return_exceptions)
        finally:
            for future in inflight:
                future.cancel()

    def info(self, timeout_s: float = 5.0) -> dict:
        """The broker's view: workers, queue depth, counters, operations offered."""
        future: cf.Future = cf.Future()
        self._command(("info", future))
        try:
            return future.result(timeout_s)
        except cf.TimeoutError:
            future.cancel()  # so the next answer goes to the next asker, not to this one
            raise TaskTimeout(f"the broker at {self.address} did not answer INFO within {timeout_s} s") from None

    @property
    def stats(self) -> dict:
        """Counters: submitted, completed, failed, resent, duplicates (dropped second answers)."""
        return dict(self._core.stats)

    def close(self) -> None:
        """Stop the IO thread; tasks still outstanding fail with BrokerUnavailable."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._command(("close",))
        self._thread.join(10)
        self._wakeup.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _outcome(self, future: cf.Future, return_exceptions: bool) -> Result | BaseException:
        # The core completes every future (answer, error or timeout); the margin only
        # guards against a stopped IO thread.
        try:
            return future.result(self.timeout_s + 30)
        except cf.TimeoutError:
            err: BaseException = TaskTimeout("the client's IO thread stopped answering")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            err = exc
        if return_exceptions:
            return err
        raise err

    def _command(self, cmd: tuple) -> None:
        """Queue a command for the IO thread; wake it only if no wake-up is pending already
        (a burst of submits costs one pipe write, not one each)."""
        self._commands.put(cmd)
        if not self._wake_pending:
            self._wake_pending = True
            self._wakeup.fire()

    # ---- the IO thread ---------------------------------------------------------------
    def _io_loop(self) -> None:
        core = self._core
        routing_id = f"c-{uuid.uuid4().hex}".encode()
        watch = HandshakeWatch(role="client", curve=self._keys is not None, address=self.address)
        sock, mon = self._socket(routing_id)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        core.outbox.append(core.greeting())
        running = True
        try:
            while running:
                if core.take_reconnect():  # broker silent: drop what is queued for it, start afresh
                    poller.unregister(sock)
                    poller.unregister(mon)
                    handshake.stop(sock, mon)
                    sock.close(linger=0)
                    sock, mon = self._socket(routing_id)
                    poller.register(sock, zmq.POLLIN)
                    poller.register(mon, zmq.POLLIN)
                self._flush(sock)
                timeout_ms = max(0, int((core.next_wakeup_s() - time.monotonic()) * 1000)) + 1
                events = dict(poller.poll(timeout_ms))
                if self._wakeup.fd in events:
                    self._wakeup.drain()
                    self._wake_pending = False  # before reading the queue: a later command fires again
                    running = self._run_commands()
                if mon in events:
                    while mon.poll(0):
                        complete(core.on_handshake(watch.feed(mon.recv_multipart())))
                if sock in events:
                    for _ in range(1024):
                        try:
                            frames = recv_frames(sock)
                        except zmq.Again:
                            break
                        complete(core.on_message(frames))
                complete(core.on_tick())
            complete(core.fail_all(lambda: BrokerUnavailable("the client was closed")))
            try:
                sock.send_multipart(core.goodbye(), zmq.NOBLOCK)
            except zmq.Again:  # never connected (e.g. the broker refused our CURVE key): nobody to tell
                pass
        finally:
            handshake.stop(sock, mon)
            sock.close(linger=100)

    def _socket(self, routing_id: bytes) -> tuple[zmq.Socket, zmq.Socket]:
        """A DEALER connected to the broker, and the monitor that reports its handshakes."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = 0  # only heartbeats queue while no broker is there; tasks wait in the core
        sock.copy_threshold = COPY_THRESHOLD_BYTES  # see engine.sockutil
        sock.routing_id = routing_id  # the same id across reconnects: the broker knows our tasks
        if self._keys is not None:
            self._keys.apply(sock)
        mon = handshake.monitor(sock)
        sock.connect(self.address)
        return sock, mon

    def _run_commands(self) -> bool:
        core = self._core
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return True
            kind = cmd[0]
            if kind == "submit":
                _, task_id, data, pipeline, options, timeout_s, future = cmd
                if future.cancelled():  # stays PENDING until answered, so cancel() works
                    continue
                try:
                    core.submit(task_id, data, pipeline, future, options=options, timeout_s=timeout_s)
                except Exception as exc:  # bad argument: fail this future, not the thread
                    future.set_exception(exc)
            elif kind == "cancel":
                core.cancel(cmd[1])
            elif kind == "info":
                try:
                    core.request_info(cmd[1])
                except Exception as exc:  # refused by the broker: say so now
                    cmd[1].set_exception(exc)
            elif kind == "close":
                return False

    def _flush(self, sock: zmq.Socket) -> None:
        outbox = self._core.outbox
        while outbox:
            try:  # no connection at all (e.g. the broker refused our CURVE key): retry at the next tick
                send_frames(sock, outbox[0], NOBLOCK)
            except zmq.Again:
                return
            outbox.popleft()
