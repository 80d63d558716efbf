"""The client's logic with no socket and no event loop (both adapters share it).

The core keeps every outstanding task until its answer comes, so it can resend them:
requests go out only while a broker is known to be there (it answered a heartbeat
within ``liveness`` intervals); when one answers after a silence, or a different broker
instance answers, every outstanding task is sent again. The broker ignores a task id it
already holds, and a second answer for the same task id is dropped here, so each task
completes exactly once.

A broker that is not there at all is told apart where that can be known at once. While the
client has never reached a broker and its address is local (loopback TCP, ``ipc://``), a
refused connection (``handshake.HandshakeWatch.unreachable``) means nothing listens there: an
INFO request that has waited ``REFUSED_INFO_S`` and a task that has waited ``REFUSED_TASK_S``
fail with ``BrokerUnavailable`` saying so, rather than waiting out their timeouts. The socket
keeps retrying all the while, so a request made once a broker listens goes through, and so does
every task still waiting when it starts. A client that reached a broker once (it restarts) and a
remote address wait as before: each request until its own timeout.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from .. import protocol as P
from .. import shm
from ..errors import (
    BrokerUnavailable,
    ImageTooLarge,
    InternalError,
    PipelineError,
    ProtocolError,
    TaskTimeout,
    Unauthorized,
    error_from_code,
    is_retryable,
)
from ..handshake import OK
from ..pipeline_syntax import check_syntax

# Used until the broker announces its own pace in its first heartbeat (``protocol.Pace``).
HEARTBEAT_INTERVAL_S = P.HEARTBEAT_INTERVAL_S
HEARTBEAT_LIVENESS = P.HEARTBEAT_LIVENESS
TIMEOUT_S = 120.0  # per task, from submit to answer
BUSY_RETRY_S = 0.25  # first wait before resending a task the broker refused as retryable (busy)
BUSY_RETRY_MAX_S = 4.0
MAX_RESULT_BYTES = 4 * 1024 * 1024 * 1024  # a result read from shared memory (a worker's, bounded by its own checks)
# Nothing listens at a local address and no broker was ever reached (see above): an INFO request
# fails after this long (several refused attempts, libzmq retries every 0.1 s) ...
REFUSED_INFO_S = 0.75
# ... and a task after this long: a client and its broker started together (a script, a test)
# leave the broker time to bind on a loaded machine. As long as the command line waits for a broker.
REFUSED_TASK_S = 10.0


def busy_retry_delay_s(retries: int) -> float:
    """How long a task refused as busy ``retries`` times before waits to be resent: a ceiling
    that doubles from ``BUSY_RETRY_S`` up to ``BUSY_RETRY_MAX_S``, of which half is waited and the
    other half is drawn at random ("equal jitter"). Tasks refused together then come back spread
    out instead of in one wave that the broker refuses again while its worker idles (30 tasks
    into a queue of 4 took 13 s and 80 refusals without it, 3 to 4.5 s and 58 with it:
    tests/test_faults_overload.py)."""
    ceiling_s = min(BUSY_RETRY_S * 2 ** retries, BUSY_RETRY_MAX_S)
    return ceiling_s / 2 + random.random() * ceiling_s / 2


@dataclass(frozen=True)
class Result:
    """A finished task: the output image bytes and what the worker said about it.
    ``index``: from ``Client.imap_unordered``, its input's position in the items given
    (0 for the first); None elsewhere."""

    task_id: str
    data: bytes
    meta: dict = field(default_factory=dict)
    index: int | None = None

    @property
    def format(self) -> str:
        return self.meta.get("format", "")

    @property
    def width(self) -> int:
        return self.meta.get("width", 0)

    @property
    def height(self) -> int:
        return self.meta.get("height", 0)

    @property
    def worker(self) -> str:
        return self.meta.get("worker", "")

    @property
    def elapsed_ms(self) -> float:
        return self.meta.get("elapsed_ms", 0.0)


@dataclass(eq=False)
class Pending:
    task_id: str
    frames: list
    handle: Any  # the adapter's future
    submitted_s: float
    deadline_s: float
    sent: bool = False
    busy_retries: int = 0
    retry_at_s: float | None = None
    seg: str | None = None  # its input's shared-memory segment (engine.shm), when sent by reference
    spare: str | None = None  # ... and a spare file of ours offered for its result


log = logging.getLogger("engine.client")

Completion = tuple[Any, Any]  # (handle, Result or exception)


def _ref(seg: str, spare: str | None) -> bytes:
    """A task's payload by reference (``engine.shm.parse_ref``)."""
    return (f"{seg} {spare}" if spare else seg).encode()


def _request_fields(header: bytes) -> tuple[Any, Any]:
    """(pipeline, options) of a request this client built (to build it again, by reference or not)."""
    head = msgpack.unpackb(header, raw=False)
    return head["pipeline"], head.get("opts")


def complete(completions: list[Completion]) -> None:
    """Resolve futures (concurrent or asyncio: same methods); a cancelled one is skipped."""
    for future, outcome in completions:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class ClientCore:
    def __init__(self, *, address: str, heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
                 heartbeat_liveness: int = HEARTBEAT_LIVENESS, timeout_s: float = TIMEOUT_S,
                 retry_busy: bool = True, max_input_bytes: int = P.MAX_INPUT_BYTES,
                 validate: bool = True, shared_memory: bool = True) -> None:
        self.address = address
        self.routing_id = f"c-{uuid.uuid4().hex}".encode()  # the same across reconnects: the broker knows our tasks
        self.validate = validate
        self.pace = P.Pace(heartbeat_interval_s, heartbeat_liveness)  # the broker's, once it answered
        self.timeout_s = timeout_s
        self.retry_busy = retry_busy
        self.max_input_bytes = max_input_bytes
        self.pending: dict[str, Pending] = {}
        self.outbox: deque[list] = deque()
        self.broker_id: str | None = None
        self.connected = False
        self.stats = {"submitted": 0, "completed": 0, "failed": 0, "resent": 0, "duplicates": 0, "by_reference": 0}
        self._heard_s = 0.0
        self._next_beat_s = 0.0
        self._retries: list[tuple[float, int, str]] = []  # heap of (at, seq, task id)
        self._deadlines: list[tuple[float, int, str]] = []  # heap of (deadline, seq, task id)
        self._seq = itertools.count()
        self._info_waiters: deque[tuple[Any, float]] = deque()  # (handle, when asked)
        self.unreachable: str | None = None  # nothing listens at our local address (HandshakeWatch), until one does
        self.reached = False  # a broker answered once
        self._started_s = time.monotonic()
        self._reconnect = False
        self.refused: str | None = None  # why the broker refused our handshake, until one succeeds
        self._handshake_retry_s = float("inf")
        self._id_prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count(1)
        # Same-host payloads (engine.shm): offered by the broker's heartbeats, used once proven.
        self._shm_wanted = shared_memory and shm.available()
        self._shm_key: str | None = None  # the key name we proved we read (this broker instance's)
        self.segments: shm.Segments | None = None
        self._next_sweep_s = 0.0
        if self._shm_wanted:
            shm.sweep_once()

    @property
    def interval_s(self) -> float:
        """Seconds between our heartbeats: the broker's interval once it announced one."""
        return self.pace.interval_s

    @property
    def liveness_s(self) -> float:
        """Seconds of silence after which the broker counts as gone."""
        return self.pace.silence_s

    def take_reconnect(self) -> bool:
        """True once after the broker fell silent: the adapter should open a fresh socket."""
        flag, self._reconnect = self._reconnect, False
        return flag

    def new_task_id(self) -> str:
        """Unique within this client (the broker keys tasks by client and id): a random
        prefix, then a counter. Called from any thread: ``next`` on a count is atomic."""
        return f"{self._id_prefix}{next(self._ids)}"

    # ---- requests --------------------------------------------------------------------
    def submit(self, task_id: str, data: bytes | bytearray, pipeline: str | list, handle: Any, *,
               options: dict | None = None, timeout_s: float | None = None) -> None:
        """Queue a task; its answer comes back as a completion for ``handle``."""
        if not isinstance(pipeline, (str, list)):
            raise TypeError(f"pipeline must be text or a list of steps, not {type(pipeline).__name__}")
        if self.refused:
            raise Unauthorized(self.refused)
        size = len(data)
        if size > self.max_input_bytes:
            raise ImageTooLarge(f"input is {size} bytes; the client's limit is {self.max_input_bytes}")
        if self.validate:  # the syntax; the broker checks the rest against what its workers declared
            check_syntax(pipeline)
        now_s = time.monotonic()
        seg, spare = self._put(data) if self._shm_key is not None and size >= shm.MIN_BYTES else (None, None)
        frames = P.request_frames(task_id, pipeline, options, data if seg is None else _ref(seg, spare),
                                  ref=seg is not None)
        pending = Pending(task_id, frames, handle, now_s, now_s + (timeout_s or self.timeout_s), seg=seg, spare=spare)
        if len(frames[0]) > P.MAX_HEADER_BYTES:
            self._ended(pending)
            raise PipelineError(f"the request header is {len(frames[0])} bytes (pipeline and options); "
                                f"the limit is {P.MAX_HEADER_BYTES} bytes")
        if seg is not None:
            self.stats["by_reference"] += 1
        self.pending[task_id] = pending
        heapq.heappush(self._deadlines, (pending.deadline_s, next(self._seq), task_id))
        self.stats["submitted"] += 1
        if self.connected:
            self._send(pending)

    def _put(self, data: bytes | bytearray) -> tuple[str | None, str | None]:
        """The image into a shared-memory segment (the broker proved we share its host): its
        name travels instead of the bytes, with a spare file of ours for the result when one is
        kept. (None, None): shared memory refused it, it goes inline."""
        if self.segments is None:
            self.segments = shm.Segments()
        try:
            return self.segments.put(data), self.segments.spare()
        except shm.ShmError as exc:  # /dev/shm full or gone
            log.warning("shared memory refused an input (%s); it is sent through the socket", exc)
            return None, None

    def _by_reference(self, pending: Pending) -> None:
        data = pending.frames[1]
        if len(data) < shm.MIN_BYTES:
            return
        seg, spare = self._put(data)
        if seg is not None:
            pending.frames = P.request_frames(pending.task_id, *_request_fields(pending.frames[0]), _ref(seg, spare),
                                              ref=True)
            pending.seg, pending.spare = seg, spare
            self.stats["by_reference"] += 1

    def _inline(self, pending: Pending) -> None:
        """A task sent by reference goes to a broker that offers no shared memory: bytes again."""
        if pending.seg is None or self.segments is None:
            return
        try:
            data = self.segments.read(pending.seg)
        except shm.ShmError:
            data = b""  # gone from under us: the worker answers bad_image, the caller sees why
        self._ended(pending)
        pending.frames = P.request_frames(pending.task_id, *_request_fields(pending.frames[0]), data)
        pending.seg = pending.spare = None
        self.stats["by_reference"] -= 1

    def _ended(self, pending: Pending) -> None:
        if pending.seg is not None and self.segments is not None:
            self.segments.release(pending.seg)
            if pending.spare is not None:
                self.segments.drop_spare(pending.spare)

    def cancel(self, task_id: str) -> None:
        pending = self.pending.pop(task_id, None)
        if pending is not None:
            self._ended(pending)
        self._tell_cancel(pending)

    def _tell_cancel(self, pending: Pending | None) -> None:
        if pending is not None and pending.sent and self.connected:
            self.outbox.append(P.encode(P.Cancel(task_id=pending.task_id)))

    def request_info(self, handle: Any, options: dict | None = None) -> None:
        """Ask for INFO; ``options`` travel in the request (``{"history": True}``: with the broker's
        recent samples; an older broker ignores them)."""
        if self.refused:
            raise Unauthorized(self.refused)
        self._info_waiters.append((handle, time.monotonic()))
        self.outbox.append(P.encode(P.Info(data=options or None)))

    def greeting(self) -> list:
        """First frames to send: a heartbeat, so the broker answers and we know it is there."""
        self._next_beat_s = time.monotonic() + self.interval_s
        return P.encode(P.Heartbeat())

    def goodbye(self) -> list:
        return P.encode(P.Disconnect(reason="client closed"))

    def _send(self, pending: Pending) -> None:
        if pending.sent:
            self.stats["resent"] += 1
        pending.sent = True
        self.outbox.append(pending.frames)

    # ---- answers ---------------------------------------------------------------------
    def on_handshake(self, verdict: str | None) -> list[Completion]:
        """A ``HandshakeWatch`` verdict: a refusal fails everything outstanding at once (and
        each later submit) with its reason, rather than leaving it to time out."""
        if verdict is None:
            return []
        if verdict == OK:
            self.refused = None
            self._handshake_retry_s = float("inf")
            return []
        self.refused = verdict
        self._handshake_retry_s = time.monotonic() + self.liveness_s  # libzmq gives up on a refused socket
        self.stats["failed"] += len(self.pending)
        return self.fail_all(lambda: Unauthorized(verdict))

    def on_connection(self, unreachable: str | None) -> None:
        """A ``HandshakeWatch``'s ``unreachable`` after each event: why nothing listens at our
        (local) address, or None once a connection is made. ``on_tick`` answers early from it."""
        self.unreachable = unreachable

    def unavailable(self) -> str | None:
        """Why no broker can take a request now, when that is known (None: one is there, or it is
        too early to tell): nothing listens at our local address, or no broker has answered for
        longer than its liveness (at all since we started, or since it last did)."""
        if self.unreachable:
            return self.unreachable
        if self.connected:
            return None
        silent_s = time.monotonic() - (self._heard_s if self.reached else self._started_s)
        if silent_s <= self.liveness_s:
            return None
        if self.reached:
            return f"the broker at {self.address} has not answered for {silent_s:.0f} s"
        return f"no broker has answered at {self.address} in {silent_s:.0f} s"

    def on_message(self, frames: list) -> list[Completion]:
        try:
            msg, payloads = P.decode(frames)
        except ProtocolError:
            return []  # not from a broker of ours; nothing to complete
        now_s = time.monotonic()
        self._heard_s = now_s
        done: list[Completion] = []
        if isinstance(msg, P.Heartbeat):
            pace = self.pace.follow(msg)
            if pace is not self.pace:  # the broker's own interval and liveness, from now on
                self.pace = pace
                self._next_beat_s = min(self._next_beat_s, now_s + pace.interval_s)
            if not self.connected or (msg.sender and msg.sender != self.broker_id):
                self.connected = self.reached = True
                self.broker_id = msg.sender
                self._offered(msg.shm)  # our proof goes out before any task sent by reference
                for queued in self.pending.values():  # everything: a new broker knows nothing
                    if queued.seg is not None and self._shm_key is None:
                        self._inline(queued)
                    elif queued.seg is None and self._shm_key is not None and not queued.sent:
                        self._by_reference(queued)  # submitted before the broker answered
                    if queued.retry_at_s is None:
                        self._send(queued)
            elif msg.shm != self._shm_key:
                self._offered(msg.shm)
        elif isinstance(msg, P.Reply):
            pending = self.pending.pop(msg.task_id, None)
            if pending is None:
                self.stats["duplicates"] += 1
            else:
                meta = dict(msg.meta)
                meta["elapsed_ms"] = round((now_s - pending.submitted_s) * 1000, 3)
                data = payloads[0].bytes if isinstance(payloads[0], zmq.Frame) else bytes(payloads[0])
                if meta.pop("shm", None) is True:
                    try:
                        data = self._result(pending, data)
                    except shm.ShmError as exc:
                        self._ended(pending)
                        self.stats["failed"] += 1
                        done.append((pending.handle, InternalError(f"the result of task {msg.task_id} could not "
                                                                   f"be read from shared memory: {exc}",
                                                                   task_id=msg.task_id)))
                        return done
                self._ended(pending)
                self.stats["completed"] += 1
                done.append((pending.handle, Result(msg.task_id, data, meta)))
        elif isinstance(msg, P.Error):
            done.extend(self._on_error(msg, now_s))
        elif isinstance(msg, P.Info):
            while self._info_waiters:  # skip askers that gave up (timed out, cancelled)
                handle, _ = self._info_waiters.popleft()
                if not handle.done():
                    done.append((handle, msg.data or {}))
                    break
        return done

    def _offered(self, key_name: str | None) -> None:
        """The broker names its shared-memory key (or none): prove we read it, or stop using it."""
        proof = shm.prove(key_name, self.routing_id) if self._shm_wanted else None
        self._shm_key = key_name if proof else None
        if proof:
            self.outbox.append(P.encode(P.Heartbeat(shm=proof)))

    def _result(self, pending: Pending, name: bytes) -> bytes:
        if pending.seg is None or self.segments is None:
            raise shm.ShmError(0, "a result by reference for a task sent inline")
        return self.segments.take_result(pending.seg, name.decode("ascii", "replace"), MAX_RESULT_BYTES)

    @property
    def shared_memory(self) -> bool:
        """Tasks of ``shm.MIN_BYTES`` or more go by shared memory now (the broker proved our host)."""
        return self._shm_key is not None

    def close_segments(self) -> None:
        """The client is closing: every segment of ours goes (after ``fail_all``)."""
        if self.segments is not None:
            self.segments.close()

    def _on_error(self, msg: P.Error, now_s: float) -> list[Completion]:
        task_id = msg.task_id
        pending = self.pending.get(task_id) if task_id else None
        if task_id is None or pending is None:
            return []
        if self.retry_busy and is_retryable(msg.code):  # busy: the broker's own rule (errors.py), read the same
            delay_s = busy_retry_delay_s(pending.busy_retries)
            pending.busy_retries += 1
            pending.retry_at_s = now_s + delay_s
            heapq.heappush(self._retries, (pending.retry_at_s, next(self._seq), pending.task_id))
            return []
        del self.pending[task_id]
        self._ended(pending)
        self.stats["failed"] += 1
        return [(pending.handle, error_from_code(msg.code, msg.message, task_id=msg.task_id,
                                                      meta=msg.meta))]

    # ---- time --------------------------------------------------------------------------
    def on_tick(self) -> list[Completion]:
        """Heartbeats, resends after busy, broker loss and task timeouts, as of now."""
        now_s = time.monotonic()
        done: list[Completion] = []
        if now_s >= self._next_beat_s:
            self.outbox.append(P.encode(P.Heartbeat()))
            self._next_beat_s = now_s + self.interval_s
        if self.connected and now_s - self._heard_s > self.liveness_s:
            self.connected = False  # requests wait until a broker answers again
            self._reconnect = True
        if self.refused and now_s >= self._handshake_retry_s:  # try again: the key may be allowed by now
            self._handshake_retry_s = now_s + self.liveness_s
            self._reconnect = True
        while self._retries and self._retries[0][0] <= now_s:
            _, _, task_id = heapq.heappop(self._retries)
            pending = self.pending.get(task_id)
            if pending is not None and pending.retry_at_s is not None:
                pending.retry_at_s = None
                if self.connected:
                    self._send(pending)
                else:
                    pending.sent = False
        if self.unreachable and not self.reached:
            done.extend(self._refused(now_s))
        while self._deadlines and self._deadlines[0][0] <= now_s:
            _, _, task_id = heapq.heappop(self._deadlines)
            pending = self.pending.pop(task_id, None)
            if pending is not None:
                self._ended(pending)
                self._tell_cancel(pending)  # the broker drops it rather than run it for nobody
                self.stats["failed"] += 1
                done.append((pending.handle, self._timeout_error(pending, now_s)))
        if self.segments is not None and now_s >= self._next_sweep_s:
            self._next_sweep_s = now_s + shm.SWEEP_INTERVAL_S
            self.segments.sweep(name for p in self.pending.values() for name in (p.seg, p.spare) if name is not None)
        return done

    def _refused(self, now_s: float) -> list[Completion]:
        """Nothing listens at our local address and never did: the requests that have waited long
        enough are answered now (see the module's docstring). Both lists are in the order asked."""
        done: list[Completion] = []
        while self._info_waiters and self._info_waiters[0][1] + REFUSED_INFO_S <= now_s:
            handle, _ = self._info_waiters.popleft()
            if not handle.done():
                done.append((handle, BrokerUnavailable(self._refused_message())))
        while self.pending:
            pending = next(iter(self.pending.values()))
            if pending.submitted_s + REFUSED_TASK_S > now_s:
                break
            del self.pending[pending.task_id]
            self._ended(pending)
            self.stats["failed"] += 1
            done.append((pending.handle, BrokerUnavailable(self._refused_message())))
        return done

    def _refused_message(self) -> str:
        return f"{self.unreachable}: start one with engine-broker (or make run)"

    def _refused_wakeup_s(self) -> float:
        """When ``_refused`` next has a request to answer."""
        wake = float("inf")
        if self._info_waiters:
            wake = self._info_waiters[0][1] + REFUSED_INFO_S
        if self.pending:
            wake = min(wake, next(iter(self.pending.values())).submitted_s + REFUSED_TASK_S)
        return wake

    def _timeout_error(self, pending: Pending, now_s: float) -> Exception:
        waited_s = now_s - pending.submitted_s
        if not self.connected and not self.broker_id:
            return BrokerUnavailable(f"no broker answered at {self.address} within {waited_s:.1f} s")
        why = "" if self.connected else f" (the broker at {self.address} has not answered recently)"
        return TaskTimeout(f"no result for task {pending.task_id} within {waited_s:.1f} s{why}")

    def next_wakeup_s(self) -> float:
        """When ``on_tick`` next has something to do (monotonic seconds)."""
        wake = self._next_beat_s
        if self.segments is not None:
            wake = min(wake, self._next_sweep_s)
        if self.refused:
            wake = min(wake, self._handshake_retry_s)
        if self.unreachable and not self.reached:
            wake = min(wake, self._refused_wakeup_s())
        if self._retries:
            wake = min(wake, self._retries[0][0])
        while self._deadlines and self._deadlines[0][2] not in self.pending:
            heapq.heappop(self._deadlines)  # answered already
        if self._deadlines:
            wake = min(wake, self._deadlines[0][0])
        return wake

    def fail_all(self, exc_factory) -> list[Completion]:
        done = [(p.handle, exc_factory()) for p in self.pending.values()]
        done += [(h, exc_factory()) for h, _ in self._info_waiters]
        for pending in self.pending.values():
            self._ended(pending)
        self.pending.clear()
        self._deadlines.clear()
        self._info_waiters.clear()
        return done
