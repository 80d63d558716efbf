"""The blocking client: futures, bounded in-flight windows, for batch jobs and threads.

One background thread owns the DEALER socket. Other threads never touch it: they put
commands on a queue and write a byte to a pipe the IO thread polls (no busy waiting).

``map`` and ``imap_unordered`` cross between the caller's thread and the IO thread in
batches: a window's worth of tasks is one command and one wake-up, and the results that
one turn of the IO loop completes reach the caller as one list (``_Sink``), with no
future per task. ``submit`` has one future per task (``_TaskFuture``).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import zmq

from .. import handshake
from ..errors import BrokerUnavailable, TaskTimeout
from ..handshake import HandshakeWatch
from ..security import PeerKeys, client_keys
from ..sockutil import NOBLOCK, dealer, send_frames, waiting
from ..wakeup import Wakeup
from .core import HEARTBEAT_INTERVAL_S, TIMEOUT_S, ClientCore, Result, complete

DEFAULT_WINDOW = 16
RECV_BATCH = 1024  # messages read from the socket before looking at commands and timers
IO_STALL_MARGIN_S = 30  # past the task timeout: the IO thread itself stopped answering


def _check_window(window: int) -> None:
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be a whole number of tasks, at least 1; got {window!r}")


def _indexed(outcome: Any, index: int) -> Any:
    """``imap_unordered``'s outcome marked with its input's position (each task's outcome is its own object)."""
    if isinstance(outcome, Result):
        return dataclasses.replace(outcome, index=index)
    outcome.index = index
    return outcome


class _TaskFuture(cf.Future):
    """``submit``'s future: cancelling it tells the broker to drop the task."""

    def __init__(self, client: Client, task_id: str) -> None:
        super().__init__()
        self._client = client
        self._task_id = task_id

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._client._command(("cancel", self._task_id))
        return True


class _Sink:
    """Where the results of one ``map``/``imap_unordered`` call go: the IO thread appends
    ``(key, result or exception)`` to ``batch`` and, once per turn of its loop, puts the
    whole list on ``results`` (one hand-over and one wake-up of the caller per turn)."""

    __slots__ = ("batch", "dirty", "results")

    def __init__(self, dirty: list) -> None:
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.batch: list = []
        self.dirty = dirty  # the IO thread's list of sinks with something to hand over

    def handle(self, key: int) -> _SinkHandle:
        return _SinkHandle(self, key)


class _SinkHandle:
    """The handle ``ClientCore`` completes for one task of a ``_Sink`` (IO thread only)."""

    __slots__ = ("finished", "key", "sink")

    def __init__(self, sink: _Sink, key: int) -> None:
        self.sink, self.key, self.finished = sink, key, False

    def done(self) -> bool:
        return self.finished

    def set_result(self, outcome: Any) -> None:
        self.finished = True
        sink = self.sink
        if not sink.batch:
            sink.dirty.append(sink)
        sink.batch.append((self.key, outcome))

    set_exception = set_result


class Client:
    """Submit images to a broker. Thread-safe; use as a context manager::

        with Client("tcp://127.0.0.1:5555") as client:
            result = client.submit(jpeg_bytes, "grayscale").result()
            for r in client.map(images, "edge", window=32):
                ...

    ``validate``: check each pipeline's syntax before sending it (the broker checks its
    operations and parameters against what its workers declared). ``retry_busy``: resend a
    task the broker refused with a retryable code (``errors.is_retryable``: ``busy``) after a
    back-off of 0.25 s doubling to 4 s, until its timeout; False: raise it (``BusyError``).
    """

    def __init__(self, address: str = "tcp://127.0.0.1:5555", *, timeout_s: float = TIMEOUT_S,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S, retry_busy: bool = True,
                 validate: bool = True, context: zmq.Context | None = None, keys: PeerKeys | None = None,
                 shared_memory: bool = True) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._keys = client_keys(keys)  # CURVE: keys=, else ENGINE_CLIENT_KEY + ENGINE_BROKER_KEY, else plaintext
        self._core = ClientCore(address=address, heartbeat_interval_s=heartbeat_interval_s,
                                timeout_s=timeout_s, retry_busy=retry_busy, validate=validate,
                                shared_memory=shared_memory and self._keys is None)
        self._ctx = context or zmq.Context.instance()
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wakeup = Wakeup()
        self._wake_pending = False  # set by a caller that fired the wake-up; cleared by the IO thread
        self._closed = False
        self._close_lock = threading.Lock()
        self._dirty: list[_Sink] = []  # IO thread only: sinks with results to hand over
        self._thread = threading.Thread(target=self._io_loop, name="engine-client-io", daemon=True)
        self._thread.start()

    # ---- public API ------------------------------------------------------------------
    def submit(self, data: bytes, pipeline: str | list, *, options: dict | None = None,
               timeout_s: float | None = None) -> cf.Future:
        """Send one image; the future's result is a ``Result`` or raises an engine error."""
        if self._closed:
            raise BrokerUnavailable("the client is closed")
        task_id = self._core.new_task_id()
        future = _TaskFuture(self, task_id)
        self._command(("submit", [(task_id, data, future)], pipeline, options, timeout_s))
        return future

    def process(self, data: bytes, pipeline: str | list, **kwargs: Any) -> Result:
        """Submit and wait: the result, or the task's error raised."""
        return self.submit(data, pipeline, **kwargs).result()

    def map(self, items: Iterable[bytes], pipeline: str | list, *, window: int = DEFAULT_WINDOW,
            return_exceptions: bool = False, **kwargs: Any) -> Iterator[Result | BaseException]:
        """Results in input order, with at most ``window`` tasks in flight (answered but
        not yet yielded counts: memory stays bounded however slow one task is).

        A failed task raises its error where its result would be (and the tasks still in
        flight are cancelled), unless ``return_exceptions`` yields the error instead.
        """
        _check_window(window)
        sink = _Sink(self._dirty)
        source: Iterator[bytes] | None = iter(items)  # None once it has run out
        answered: dict[int, Any] = {}
        submitted = yielded = 0
        try:
            while True:
                room = window - (submitted - yielded)
                if room > 0 and source is not None:
                    count = self._submit_batch(sink, source, submitted, room, pipeline, kwargs)
                    submitted += count
                    if count < room:
                        source = None
                if yielded == submitted:
                    return
                while yielded not in answered:
                    answered.update(self._take(sink))
                while yielded in answered:
                    outcome = answered.pop(yielded)
                    yielded += 1
                    yield self._outcome(outcome, return_exceptions)
        finally:
            self._cancel_rest(sink, range(yielded, submitted), answered)

    def imap_unordered(self, items: Iterable[bytes], pipeline: str | list, *, window: int = DEFAULT_WINDOW,
                       return_exceptions: bool = False, **kwargs: Any) -> Iterator[Result | BaseException]:
        """Results as they come, with at most ``window`` tasks in flight. The window is
        refilled as each batch of answers arrives, before they are yielded.

        Each says which input it belongs to: a ``Result``'s ``index`` and a failed task's
        error's ``index`` are its input's position in ``items`` (0 for the first), whether the
        error is yielded (``return_exceptions``) or raised."""
        _check_window(window)
        sink = _Sink(self._dirty)
        source: Iterator[bytes] | None = iter(items)  # None once it has run out
        waiting: set[int] = set()
        submitted = 0
        try:
            while True:
                room = window - len(waiting)
                if room > 0 and source is not None:
                    count = self._submit_batch(sink, source, submitted, room, pipeline, kwargs)
                    waiting.update(range(submitted, submitted + count))
                    submitted += count
                    if count < room:
                        source = None
                if not waiting:
                    return
                batch = self._take(sink)
                waiting.difference_update(key for key, _ in batch)
                if source is not None:  # keep the workers busy while the caller handles these
                    room = window - len(waiting)
                    count = self._submit_batch(sink, source, submitted, room, pipeline, kwargs)
                    waiting.update(range(submitted, submitted + count))
                    submitted += count
                    if count < room:
                        source = None
                for key, outcome in batch:
                    yield self._outcome(_indexed(outcome, key), return_exceptions)
        finally:
            self._cancel_rest(sink, waiting, {})

    def _submit_batch(self, sink: _Sink, source: Iterator[bytes], first_key: int, count: int,
                      pipeline: str | list, kwargs: dict) -> int:
        """Up to ``count`` tasks from ``source`` as one command; returns how many."""
        if self._closed:
            raise BrokerUnavailable("the client is closed")
        new_id = self._core.new_task_id
        tasks = [(new_id(), data, sink.handle(key)) for key, data in zip(itertools.count(first_key),
                                                                        itertools.islice(source, count))]
        if tasks:
            self._command(("submit", tasks, pipeline, kwargs.get("options"), kwargs.get("timeout_s")))
        return len(tasks)

    def _take(self, sink: _Sink) -> list:
        """The next batch of ``(key, outcome)`` (the core answers every task, if only with
        its timeout; the margin only guards against a stopped IO thread)."""
        try:
            return sink.results.get(timeout=self.timeout_s + IO_STALL_MARGIN_S)
        except queue.Empty:
            raise TaskTimeout("the client's IO thread stopped answering") from None

    def _cancel_rest(self, sink: _Sink, keys: Iterable[int], answered: dict) -> None:
        """The caller stopped early: the tasks not answered yet are dropped at the broker."""
        if any(key not in answered for key in keys) and not self._closed:
            self._command(("cancel_sink", sink))

    def info(self, timeout_s: float = 5.0, *, history: bool = False) -> dict:
        """The broker's view: workers, queue depth, counters, operations offered; with ``history``,
        its last minutes of samples of the counters and the queue too (``history`` key).

        Raises ``TaskTimeout`` when no answer came within ``timeout_s``, and ``BrokerUnavailable``
        sooner (``core.REFUSED_INFO_S``) when nothing listens at a local address and this client
        never reached a broker (the module docstring of ``engine.client.core`` has the rule)."""
        future: cf.Future = cf.Future()
        self._command(("info", future, {"history": True} if history else None))
        try:
            return future.result(timeout_s)
        except cf.TimeoutError:
            future.cancel()  # so the next answer goes to the next asker, not to this one
            raise TaskTimeout(f"the broker at {self.address} did not answer INFO within {timeout_s} s") from None

    @property
    def stats(self) -> dict:
        """Counters: submitted, completed, failed, resent, duplicates (dropped second answers),
        by_reference (sent as a shared-memory segment: the broker proved this client shares its host)."""
        return dict(self._core.stats)

    @property
    def shared_memory(self) -> bool:
        """Images of ``engine.shm.MIN_BYTES`` or more go through shared memory now: the broker shares
        this host, offers it (every worker it has reads it too) and has our proof."""
        return self._core.shared_memory

    def close(self) -> None:
        """Stop the IO thread; tasks still outstanding fail with BrokerUnavailable."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._command(("close",))
        self._thread.join(10)
        self._wakeup.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def _outcome(outcome: Any, return_exceptions: bool) -> Result | BaseException:
        if isinstance(outcome, BaseException) and not return_exceptions:
            raise outcome
        return outcome

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
        routing_id = core.routing_id
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
                        core.on_connection(watch.unreachable)
                if sock in events:
                    for frames in waiting(sock, RECV_BATCH):
                        complete(core.on_message(frames))
                complete(core.on_tick())
                self._hand_over()
            complete(core.fail_all(lambda: BrokerUnavailable("the client was closed")))
            core.close_segments()
            self._hand_over()
            try:
                sock.send_multipart(core.goodbye(), zmq.NOBLOCK)
            except zmq.Again:  # never connected (e.g. the broker refused our CURVE key): nobody to tell
                pass
        finally:
            handshake.stop(sock, mon)
            sock.close(linger=100)

    def _socket(self, routing_id: bytes) -> tuple[zmq.Socket, zmq.Socket]:
        """A DEALER connected to the broker, and the monitor that reports its handshakes."""
        # sndhwm 0: only heartbeats queue while no broker is there; tasks wait in the core
        sock, mon = dealer(self._ctx, self.address, routing_id, keys=self._keys, sndhwm=0, monitor=True)
        assert mon is not None
        return sock, mon

    def _hand_over(self) -> None:
        """Each sink's results of this turn go to its caller as one list."""
        for sink in self._dirty:
            batch, sink.batch = sink.batch, []
            sink.results.put(batch)
        self._dirty.clear()

    def _run_commands(self) -> bool:
        core = self._core
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return True
            kind = cmd[0]
            if kind == "submit":
                _, tasks, pipeline, options, timeout_s = cmd
                for task_id, data, handle in tasks:
                    if handle.done():  # a future cancelled before it was sent
                        continue
                    try:
                        core.submit(task_id, data, pipeline, handle, options=options, timeout_s=timeout_s)
                    except Exception as exc:  # bad argument: fail this task, not the thread
                        handle.set_exception(exc)
            elif kind == "cancel":
                core.cancel(cmd[1])
            elif kind == "cancel_sink":  # a map the caller left early: drop what it still waits for
                for pending in [p for p in core.pending.values() if getattr(p.handle, "sink", None) is cmd[1]]:
                    pending.handle.finished = True
                    core.cancel(pending.task_id)
            elif kind == "info":
                try:
                    core.request_info(cmd[1], cmd[2])
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
