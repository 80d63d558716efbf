"""The broker's forwarding loop per message, in pure Python: the specification of ``_hotpath``.

``HotPath`` reads the front (clients) and back (workers) sockets itself. A message in the
common shape it forwards at once, with no ``Task`` or ``Origin`` built; every other message
(a first request of a pipeline, options, heartbeats, READY, errors, anything odd) it hands
back to the broker's Python code untouched, one at a time, in the order it arrived:

- a REQUEST whose header holds only ``v``, ``t``, ``id`` (1-128 ASCII characters),
  ``pipeline`` (a text the broker registered with ``add_pipeline``) and, optionally,
  ``opts`` equal to ``{"cache": false}`` and ``ref`` equal to true, from a client the broker
  registered (``add_route``), not refused, not a resend of a task in the broker's own table,
  while ``accepting``: queued here, in arrival order, up to ``max_queue``. With ``ref`` (the
  payload names a shared-memory segment, see ``engine.shm``) only from a client the broker
  marked ``set_route_shm`` and only if a kind in ``ref_mask`` runs the pipeline;
- queued tasks go to the least recently used worker with a slot the broker lent
  (``lend``) whose kind (a bit) the pipeline's mask holds (and ``ref_mask``, for a task by
  reference), as ``{"v","t","id": "<jid>@<instance>","pipeline",["opts"],["more"],["ref"]}``
  and the payload;
- a REPLY (``v``, ``t``, ``id``, ``meta``; a map without ``broker_ms``) from the worker
  that holds the task goes to its client with the client's id and ``broker_ms`` added;
  its slot stays lent (or goes back to the broker, see ``hungry``).

Everything else in a task's life is the broker's: it takes a task out with the ``take*``
calls (as a tuple, see ``Taken``) and runs it on its own path from then on. Counters,
samples, returned slots and replies a client would not read now come out in ``collect``.

The compiled twin (``engine/broker/_hotpath.pyx``) keeps this behaviour exactly and
calls libzmq directly; ``load`` picks it unless ``ENGINE_NO_EXTENSIONS`` is set.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
import zmq

from .. import protocol as P
from ..sockutil import NOBLOCK, send_frames, waiting
from .config import DRAIN_BATCH  # messages read from one socket per call before returning

log = logging.getLogger("engine.broker")

ENV_NO_EXTENSIONS = "ENGINE_NO_EXTENSIONS"
BASE_JID = 1 << 40  # jids of the tasks held here; the broker's own are smaller
MAX_SKIPPED = 64  # queued tasks one dispatch pass steps over (no lent slot of a kind that takes them)
MAX_KINDS = 63  # kinds of worker (distinct declarations of the operations) that can be lent slots
REQUEST_KEYS = frozenset(("v", "t", "id", "pipeline", "opts", "ref"))
REPLY_KEYS = frozenset(("v", "t", "id", "meta"))
NO_CACHE = {"cache": False}
SAMPLES_BEFORE_RETURN = 4096  # run() hands the broker its samples at least this often


class Taken(NamedTuple):
    """A task handed back to the broker: queued (``worker`` None) or at a worker."""

    jid: int
    route: bytes
    task_id: str
    pipeline: str
    options: dict | None
    payload: Any  # zmq.Frame
    received_s: float
    worker: bytes | None
    dispatched_s: float
    lease_due_s: float
    ref: bool = False  # the payload names a shared-memory segment


class Counts(NamedTuple):
    received: int
    completed: int
    bytes_in: int
    bytes_out: int
    undeliverable: int


@dataclass(eq=False, slots=True)
class _Task:
    jid: int
    route: _Route
    task_id: str
    pipeline: str
    cache_off: bool
    payload: Any
    received_s: float
    mask: int = 0  # the kinds of worker that may run it
    ref: bool = False
    queued_bytes: int = 0  # its payload's bytes while it waits in the queue (0: not queued)
    worker: _Worker | None = None
    dispatched_s: float = 0.0
    lease_due_s: float = float("inf")


@dataclass(eq=False, slots=True)
class _Route:
    route: bytes
    seen_s: float = 0.0
    blocked: bool = False  # its replies wait in the broker's outbox: the next ones go there too
    refused: bool = False  # so many wait that its new tasks are the broker's to refuse
    shm: bool = False  # it proved it shares the broker's host: it may send tasks by reference
    held: set = field(default_factory=set)  # ids of its tasks in the broker's own table (a resend is one)
    queued_bytes: int = 0  # payload bytes of its tasks queued here
    tasks: dict = field(default_factory=dict)  # client task id -> _Task


@dataclass(eq=False, slots=True)
class _Worker:
    wid: bytes
    kind: int
    idle: int = 0  # lent slots free now
    busy: dict = field(default_factory=dict)  # jid -> _Task
    done: int = 0  # answered since the last collect
    seen_s: float = 0.0  # its last answer (monotonic)
    retired: bool = False  # draining or leaving: its busy slots go back to the broker


def load(front: zmq.Socket, back: zmq.Socket, **kwargs: Any) -> Any:
    """The compiled hot path when it is built and allowed, else this module's ``HotPath``."""
    if not os.environ.get(ENV_NO_EXTENSIONS):
        try:
            from . import _hotpath  # type: ignore[attr-defined]
        except ImportError as exc:
            log.info("broker hot path: pure Python (the compiled core is not built: %s)", exc)
        else:
            try:
                core = _hotpath.HotPath(front, back, **kwargs)
            except OSError as exc:
                log.warning("broker hot path: pure Python (the compiled core cannot use pyzmq's libzmq: %s)", exc)
            else:
                log.info("broker hot path: compiled (%s)", _hotpath.__file__.rsplit("/", 1)[-1])
                return core
    else:
        log.info("broker hot path: pure Python (%s is set)", ENV_NO_EXTENSIONS)
    return HotPath(front, back, **kwargs)


class HotPath:
    compiled = False

    def __init__(self, front: zmq.Socket, back: zmq.Socket, *, instance_id: str, max_queue: int,
                 lease_s: float, max_queue_bytes: int = 2**62, max_route_bytes: int = 2**62) -> None:
        self.front = front
        self.back = back
        self.suffix = "@" + instance_id
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes  # payload bytes queued here, all clients (the broker's share)
        self.max_route_bytes = max_route_bytes  # payload bytes queued here per client
        self.lease_s = lease_s
        self.qbytes = 0
        self.accepting = True  # False: every request goes to the broker (it is stopping)
        self.hungry = False  # True: a freed slot goes back to the broker (its own queue waits)
        self.ref_mask = 0  # the kinds of worker that read shared memory (tasks by reference go only there)
        self._routes: dict[bytes, _Route] = {}
        self._pipelines: dict[str, tuple[int, bool]] = {}  # text -> (kind mask, cache on: needs opts cache=false)
        self._workers: dict[bytes, _Worker] = {}
        # Workers with idle lent slots, per kind: kind -> wid -> when last used, least recent first. A task
        # goes to the least recently used among the first of each kind its mask holds: one look per kind.
        self._lru: dict[int, OrderedDict[bytes, int]] = {}
        self._lru_mask = 0  # the kinds with a worker in ``_lru``
        self._used = itertools.count()
        self.looks = 0  # workers looked at to pick one, since the start (the pick's cost, for tests)
        self._tasks: dict[int, _Task] = {}
        self._queue: deque[_Task] = deque()
        self._next_jid = BASE_JID
        self._counts = [0, 0, 0, 0, 0]
        self._samples: list[tuple[bytes, float, float, float]] = []  # (worker, queued s, worker s, total s)
        self._returned: list[bytes] = []
        self._held: list[tuple[bytes, list]] = []
        self._given: list[Taken] = []  # tasks given back while pumping (see ``given``)
        self.set_extras([])

    # ---- what the broker registers -------------------------------------------------------
    def add_route(self, route: bytes) -> None:
        if route not in self._routes:
            self._routes[route] = _Route(route)

    def remove_route(self, route: bytes) -> list[Taken]:
        """Forget a client: its tasks come back (to be dropped)."""
        r = self._routes.pop(route, None)
        return [self._take(t) for t in list(r.tasks.values())] if r is not None else []

    def route_seen_s(self, route: bytes) -> float:
        r = self._routes.get(route)
        return r.seen_s if r is not None else 0.0

    def set_route_shm(self, route: bytes, on: bool) -> None:
        """The client proved (or no longer) that it shares the broker's host."""
        r = self._routes.get(route)
        if r is not None:
            r.shm = on

    def block_route(self, route: bytes, blocked: bool, refused: bool = False) -> None:
        """Its replies wait in the broker's outbox (``blocked``: the next go there, in order,
        until it empties); so many that its new tasks are the broker's to refuse (``refused``)."""
        r = self._routes.get(route)
        if r is not None:
            r.blocked, r.refused = blocked, refused

    def note_held(self, route: bytes, task_id: str, held: bool) -> None:
        """The broker holds (or no longer holds) this task of the client: a resend of it is
        the broker's to drop, not a new task here."""
        r = self._routes.get(route)
        if r is not None:
            if held:
                r.held.add(task_id)
            else:
                r.held.discard(task_id)

    def holds(self, route: bytes, task_id: str) -> bool:
        r = self._routes.get(route)
        return r is not None and task_id in r.tasks

    def add_pipeline(self, text: str, mask: int, cached: bool) -> None:
        self._pipelines[text] = (mask, cached)

    def clear_pipelines(self) -> None:
        self._pipelines.clear()

    # ---- slots ---------------------------------------------------------------------------
    def lend(self, wid: bytes, kind: int, slots: int) -> None:
        if not 0 <= kind <= MAX_KINDS or slots <= 0:
            raise ValueError(f"kind {kind} (0-{MAX_KINDS}) and slots {slots} (> 0)")
        w = self._workers.get(wid)
        if w is None:
            w = self._workers[wid] = _Worker(wid, kind)
        self._unlink(w)
        w.kind, w.retired = kind, False
        w.idle += slots
        self._push(w)
        self._dispatch()

    def set_kind(self, wid: bytes, kind: int) -> None:
        """A worker's kind changed (it proved it reads shared memory): its slots here follow."""
        if not 0 <= kind <= MAX_KINDS:
            raise ValueError(f"kind {kind} (0-{MAX_KINDS})")
        w = self._workers.get(wid)
        if w is not None:
            idle = self._unlink(w)
            w.kind = kind
            if idle:
                self._push(w)
            self._dispatch()

    def reclaim(self) -> list[tuple[bytes, int]]:
        """Every idle lent slot back to the broker."""
        out = [(wid, self._workers[wid].idle) for ready in self._lru.values() for wid in ready]
        for wid, _ in out:
            self._workers[wid].idle = 0
        self._lru.clear()
        self._lru_mask = 0
        return out

    def retire(self, wid: bytes) -> list[Taken]:
        """A worker leaves (or drains): its idle slots are gone, its tasks come back."""
        w = self._workers.pop(wid, None)
        if w is None:
            return []
        self._unlink(w)
        w.retired = True
        return [self._take(t) for t in list(w.busy.values())]

    # ---- tasks back to the broker ----------------------------------------------------------
    def take(self, route: bytes, task_id: str) -> Taken | None:
        r = self._routes.get(route)
        t = r.tasks.get(task_id) if r is not None else None
        return self._take(t) if t is not None else None

    def take_jid(self, jid: int) -> Taken | None:
        t = self._tasks.get(jid)
        return self._take(t) if t is not None else None

    def take_expired(self, now_s: float) -> list[Taken]:
        return [self._take(t) for w in list(self._workers.values()) for t in list(w.busy.values())
                if t.lease_due_s <= now_s]

    def take_queued(self) -> list[Taken]:
        return [self._take(t) for t in list(self._queue)]

    def take_held_before(self, wid: bytes, before_s: float) -> list[Taken]:
        w = self._workers.get(wid)
        return [self._take(t) for t in list(w.busy.values()) if t.dispatched_s < before_s] if w else []

    def _take(self, t: _Task) -> Taken:
        del self._tasks[t.jid]
        t.route.tasks.pop(t.task_id, None)
        w = t.worker
        if w is None:
            self._queue.remove(t)  # O(queue): a rare call
            self._unqueued(t)
        else:
            w.busy.pop(t.jid, None)
        return Taken(t.jid, t.route.route, t.task_id, t.pipeline, dict(NO_CACHE) if t.cache_off else None,
                     t.payload, t.received_s, w.wid if w else None, t.dispatched_s, t.lease_due_s, t.ref)

    def given(self) -> list[Taken]:
        """The tasks given back by the last pump, with the message it returned (their answer)."""
        given, self._given = self._given, []
        return given

    def _unqueued(self, t: _Task) -> None:
        self.qbytes -= t.queued_bytes
        t.route.queued_bytes -= t.queued_bytes
        t.queued_bytes = 0

    # ---- what the broker reads -------------------------------------------------------------
    def queued(self) -> int:
        return len(self._queue)

    def bytes_queued(self) -> int:
        """Payload bytes of every task queued here."""
        return self.qbytes

    def route_queued_bytes(self, route: bytes) -> int:
        """Payload bytes of this client's tasks queued here."""
        r = self._routes.get(route)
        return r.queued_bytes if r is not None else 0

    def tasks(self) -> int:
        return len(self._tasks)

    def idle_slots(self) -> int:
        return sum(self._workers[wid].idle for ready in self._lru.values() for wid in ready)

    def load_of(self, wid: bytes) -> tuple[int, int]:
        """(idle lent slots, tasks running) of a worker."""
        w = self._workers.get(wid)
        return (w.idle, len(w.busy)) if w is not None else (0, 0)

    def collect(self) -> tuple[Counts, list, list, list, list]:
        """What happened since the last call: counts, samples (worker, queued s, worker s,
        total s), slots given back (worker ids), replies to hold for clients that do not read
        (route, frames), and per worker answered (worker, tasks done, last answer s)."""
        counts = Counts(*self._counts)
        self._counts = [0, 0, 0, 0, 0]
        samples, self._samples = self._samples, []
        returned, self._returned = self._returned, []
        held, self._held = self._held, []
        done = [(w.wid, w.done, w.seen_s) for w in self._workers.values() if w.done]
        for w in self._workers.values():
            w.done = 0
        return counts, samples, returned, held, done

    # ---- the loop --------------------------------------------------------------------------
    def set_extras(self, extras: list) -> None:
        """The other sockets and file descriptors the broker's loop waits on: ``run`` returns
        as soon as one is readable."""
        self._poller = zmq.Poller()
        for item in (self.back, self.front, *extras):
            self._poller.register(item, zmq.POLLIN)
        self._extras = list(extras)

    def run(self, timeout_s: float) -> tuple[int, list] | None:
        """Wait and forward for up to ``timeout_s``; return early with (0, frames) or (1, frames)
        for a front or back message the broker must see, or None when something else needs
        it: another socket readable, slots or replies to hand over, many samples, or the time is up."""
        until_s = time.monotonic() + timeout_s
        while True:
            left_s = until_s - time.monotonic()
            ready = dict(self._poller.poll(0 if left_s <= 0 else int(left_s * 1000) + 1))
            if self.back in ready:
                out = self.pump_back()
                if out is not None:
                    return 1, out
            if self.front in ready:
                out = self.pump_front()
                if out is not None:
                    return 0, out
            if any(item in ready for item in self._extras):
                return None
            if self._returned or self._held or self._given or len(self._samples) >= SAMPLES_BEFORE_RETURN \
                    or time.monotonic() >= until_s:
                return None

    def pump_front(self) -> list | None:
        """Handle waiting client messages; return the first the broker must see, or None."""
        for frames in waiting(self.front, DRAIN_BATCH):
            if not self._request(frames):
                self._dispatch()
                return frames
        self._dispatch()
        return None

    def pump_back(self) -> list | None:
        """Handle waiting worker messages; return the first the broker must see, or None."""
        for frames in waiting(self.back, DRAIN_BATCH):
            if not self._reply(frames):
                self._dispatch()
                return frames
        self._dispatch()
        return None

    def _request(self, frames: list) -> bool:
        if len(frames) != 3 or not self.accepting or len(self._queue) >= self.max_queue:
            return False
        r = self._routes.get(frames[0].bytes)
        if r is None or r.refused:
            return False
        size = len(frames[2])
        if self.qbytes + size > self.max_queue_bytes or r.queued_bytes + size > self.max_route_bytes:
            return False  # the broker's path answers: "busy", or queues the one image it lets through
        head = _map(frames[1])
        if head is None or not head.keys() <= REQUEST_KEYS or not _is_int(head.get("v"), P.PROTOCOL_VERSION) \
                or not _is_int(head.get("t"), P.REQUEST):
            return False
        tid, pipeline, opts = head.get("id"), head.get("pipeline"), head.get("opts", None)
        if not isinstance(tid, str) or not 0 < len(tid) <= P.MAX_TASK_ID_CHARS or not tid.isascii() \
                or not isinstance(pipeline, str) or tid in r.held:
            return False
        known = self._pipelines.get(pipeline)
        if known is None:
            return False
        cache_off = "opts" in head
        if cache_off and (opts != NO_CACHE or type(opts.get("cache")) is not bool):
            return False
        if known[1] and not cache_off:
            return False  # the result cache answers it, or keeps its result: the broker's path
        ref = "ref" in head
        mask = known[0]
        if ref:
            mask &= self.ref_mask
            if head["ref"] is not True or not r.shm or not mask:
                return False  # not proven, or no worker here reads shared memory: the broker's path
        now_s = time.monotonic()
        r.seen_s = now_s
        payload = frames[2]
        counts = self._counts
        counts[0] += 1
        counts[2] += len(payload)
        if tid in r.tasks:
            return True  # a resend of a task held here
        jid = self._next_jid
        self._next_jid += 1
        t = _Task(jid, r, tid, pipeline, cache_off, payload, now_s, mask, ref)
        self._tasks[jid] = t
        r.tasks[tid] = t
        self._queue.append(t)
        t.queued_bytes = size
        self.qbytes += size
        r.queued_bytes += size
        return True

    def _reply(self, frames: list) -> bool:
        wid = frames[0].bytes
        head = _map(frames[1]) if len(frames) >= 2 else None
        jid = self._jid(head.get("id")) if head is not None else None
        t = self._tasks.get(jid) if jid is not None else None
        if t is None or head is None or jid is None:
            return False
        w = t.worker
        if w is None or w.wid != wid:
            return False  # not from the worker that runs it: the broker drops it
        if (len(frames) != 3 or not head.keys() <= REPLY_KEYS
                or not _is_int(head.get("v"), P.PROTOCOL_VERSION) or not _is_int(head.get("t"), P.REPLY)
                or not isinstance(head.get("meta"), dict) or "broker_ms" in head["meta"]):
            self._given.append(self._take(t))  # an error, or a shape only the broker reads: it gets the task
            return False
        now_s = time.monotonic()
        del self._tasks[jid]
        del t.route.tasks[t.task_id]
        del w.busy[jid]
        w.done += 1
        w.seen_s = now_s
        self._free(w)
        meta = head["meta"]
        meta["broker_ms"] = round((now_s - t.received_s) * 1000, 3)
        payload = frames[2]
        counts = self._counts
        counts[1] += 1
        counts[3] += len(payload)
        self._samples.append((wid, t.dispatched_s - t.received_s, now_s - t.dispatched_s, now_s - t.received_s))
        out = P.reply_frames(t.task_id, meta, payload)
        r = t.route
        if r.blocked:
            self._held.append((r.route, out))
            return True
        try:
            send_frames(self.front, [r.route, *out], NOBLOCK)
        except zmq.Again:  # the client does not read: the broker's outbox holds this and what follows
            r.blocked = True
            self._held.append((r.route, out))
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            counts[4] += 1  # the client is gone: its reply is dropped
        return True

    def _jid(self, task_id: Any) -> int | None:
        if not isinstance(task_id, str) or not task_id.endswith(self.suffix):
            return None
        text = task_id[:-len(self.suffix)]
        return int(text) if text.isdigit() and len(text) < 20 else None

    def _free(self, w: _Worker) -> None:
        """A task of ``w`` ended here: its slot stays lent, or goes back to the broker."""
        if w.retired or self.hungry:
            self._returned.append(w.wid)
            return
        w.idle += 1
        self._push(w)

    def _push(self, w: _Worker) -> None:
        """``w`` has an idle slot and was just used: last in its kind's order."""
        ready = self._lru.get(w.kind)
        if ready is None:
            ready = self._lru[w.kind] = OrderedDict()
            self._lru_mask |= 1 << w.kind
        ready.pop(w.wid, None)
        ready[w.wid] = next(self._used)

    def _unlink(self, w: _Worker) -> bool:
        """``w`` leaves its kind's order; whether it was there."""
        ready = self._lru.get(w.kind)
        if ready is None or ready.pop(w.wid, None) is None:
            return False
        if not ready:
            del self._lru[w.kind]
            self._lru_mask &= ~(1 << w.kind)
        return True

    def _pick(self, mask: int) -> _Worker | None:
        """The least recently used worker with an idle slot whose kind ``mask`` holds."""
        best, best_used = None, -1
        kinds = mask & self._lru_mask
        while kinds:
            kind = (kinds & -kinds).bit_length() - 1
            kinds &= kinds - 1
            wid, used = next(iter(self._lru[kind].items()))
            self.looks += 1
            if best is None or used < best_used:
                best, best_used = wid, used
        return self._workers[best] if best is not None else None

    def _dispatch(self) -> None:
        queue = self._queue
        skipped: list[_Task] = []
        while queue and self._lru_mask:
            t = queue.popleft()
            w = self._pick(t.mask)
            if w is None:
                skipped.append(t)
                if len(skipped) >= MAX_SKIPPED:
                    break
                continue
            self._unqueued(t)
            w.idle -= 1
            if w.idle <= 0:
                self._unlink(w)
            else:
                self._push(w)
            now_s = time.monotonic()
            t.worker, t.dispatched_s, t.lease_due_s = w, now_s, now_s + self.lease_s
            w.busy[t.jid] = t
            frames = P.request_frames(f"{t.jid}{self.suffix}", t.pipeline, dict(NO_CACHE) if t.cache_off else None,
                                      t.payload, more=bool(queue), ref=t.ref)
            try:
                send_frames(self.back, [w.wid, *frames], NOBLOCK)
            except zmq.ZMQError as exc:  # gone or not reading: heartbeats and leases decide, as for the broker
                log.debug("a task to worker %r was not sent: %s", w.wid, exc)
        queue.extendleft(reversed(skipped))


def _map(frame: Any) -> dict | None:
    raw = frame.buffer if isinstance(frame, zmq.Frame) else frame
    if len(raw) > P.MAX_HEADER_BYTES:
        return None
    try:
        head = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception:  # any bad header: the broker's path says what is wrong
        return None
    return head if isinstance(head, dict) else None


def _is_int(value: Any, want: int) -> bool:
    return type(value) is int and value == want
