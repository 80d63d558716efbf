"""The broker: front ends for clients, a worker side, all owned by one thread.

Tasks are admitted into a bounded queue and handed to the least recently used worker
with a free slot (see ``state.Dispatcher``). Replies go back through the front end that
admitted the task, to the peer that sent it. Heartbeats both ways; a silent worker's
tasks, and a task whose lease expired, are queued again.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from collections import Counter, deque
from typing import Any

import zmq

from .. import __version__, fdlimit, logbound, memtrim, shm, tracing
from .. import protocol as P
from ..cache import ResultCache
from ..errors import ConfigError, TaskCancelled
from ..metrics import BrokerMetrics, WorkerRow
from ..pipeline_syntax import suggest
from ..security import CLIENTS, HOW_TO_MAKE_KEYS, CurveServer
from ..sockutil import last_endpoint
from ..wakeup import Wakeup
from . import admission, fastlane
from . import config as C
from . import info as info_
from .admission import CHECKS, Admission, Verdict
from .compat import CompatFront
from .config import BrokerConfig
from .front import Origin
from .history import History
from .native import NativeFront
from .outbox import UnreadLimits
from .pipelines import PipelineChecker
from .quota import QuotaLimits, Quotas
from .state import Dispatcher, Payload, Task, peer_name
from .workers import WorkerSide

log = logging.getLogger("engine.broker")

RECENT_FAILURES = 20  # the last failed tasks kept for INFO (code, message, pipeline, worker)
RECENT_TEXT_CHARS = 200

# Counters in INFO besides the task counters of ``metrics.counts()`` (received, completed, failed,
# refusals by code, cancelled, requeued, reassigned, bad_messages): those the metrics keep, once.
STAT_NAMES = ("straggler_copies", "late_replies", "leases_expired", "unread_dropped", "undeliverable",
              "internal_errors", "workers_refused")


def poll_timeout_ms(wake_s: float, now_s: float) -> int:
    """How long to wait for messages before ``wake_s``: rounded up, so a timer due in under a
    millisecond is a 1 ms wait, not a run of zero-timeout polls until it is due (busy waiting)."""
    return max(0, math.ceil((wake_s - now_s) * 1000))


class Broker:
    def __init__(self, config: BrokerConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        self.instance_id = uuid.uuid4().hex[:12]
        if context is None:  # its own context, with I/O threads sized for the host
            context = zmq.Context(io_threads=config.io_threads or C.default_io_threads())
            self._own_context = True
        else:
            self._own_context = False
        self.ctx = context
        self.dispatcher = Dispatcher(max_queue=config.max_queue, max_retries=config.max_retries,
                                     liveness_s=config.heartbeat_interval_s * config.heartbeat_liveness,
                                     max_workers=config.max_workers, max_workers_per_host=config.max_workers_per_host,
                                     max_slots_per_host=config.max_slots_per_host,
                                     max_declarations=config.max_declarations)
        self.pipelines = PipelineChecker(self.dispatcher)
        self.stats: Counter[str] = Counter(dict.fromkeys(STAT_NAMES, 0))
        self.recent_failures: deque[dict] = deque(maxlen=RECENT_FAILURES)  # for the status page (INFO)
        self.metrics = BrokerMetrics()  # the one count of task events: INFO and /metrics read it
        self.history = History()  # the last minutes of those counts and the queue, for the status page (INFO)
        self.unread_limits = UnreadLimits(refuse_bytes=config.unread_refuse_bytes,
                                          drop_bytes=config.unread_drop_bytes,
                                          refuse_tasks=config.unread_refuse_tasks, drop_tasks=config.unread_drop_tasks)
        self._wakeup = Wakeup()
        self._stopping = False
        self._started_s = time.monotonic()
        self.quotas = Quotas(QuotaLimits(max_in_flight=config.client_max_in_flight,
                                         rate_per_s=config.client_rate_per_s, burst=config.client_burst),
                             max_clients=config.max_identities)
        self.curve = self._curve(config, self.ctx)  # its ZAP handler runs before any socket binds
        self.shm_key = self._shm_key(config)
        self._next_sweep_s = 0.0
        self._descriptors = fdlimit.Watch("broker")
        self._share_memo: tuple[int, bool] = (-1, False)
        self.lane: fastlane.FastLane | None = None  # the hot path, once the sockets are bound
        self.native = NativeFront(self)
        self.workers = WorkerSide(self)
        self.cache = ResultCache(config.cache_bytes, max_entries=config.cache_max_entries) \
            if config.cache_bytes > 0 else None
        self.compat = CompatFront(self) if config.compat else None
        self.fronts = [f for f in (self.native, self.compat) if f is not None]
        self.endpoints = {"front": last_endpoint(self.native.sock), "back": last_endpoint(self.workers.sock)}
        self.lane = fastlane.FastLane(self, self.native.sock, self.workers.sock) if fastlane.wanted(self) else None
        if self.lane is None:
            log.info("broker hot path: off (%s)", "--no-hot-path" if not config.hot_path
                     else "CURVE or client quotas are on: every task takes the Python path")

    def _shm_key(self, config: BrokerConfig) -> shm.BrokerKey | None:
        """Same-host peers may pass images through shared memory: only in plaintext (a CURVE peer is
        never offered it), when the host has /dev/shm and it is not turned off."""
        why = ("--no-shm" if not config.shared_memory else "CURVE is on" if self.curve is not None
               else f"{shm.ENV_NO_SHM} is set or there is no {shm.SHM_DIR}" if not shm.available() else None)
        if why is None:
            try:
                key = shm.BrokerKey()
            except shm.ShmError as exc:
                why = str(exc)
            else:
                log.info("shared memory: offered to clients and workers on this host that prove it (key %s)",
                         key.name)
                shm.sweep_dead()
                return key
        log.info("shared memory: off (%s): every image crosses the sockets", why)
        return None

    def heartbeat(self, *, client: bool = False, **fields: Any) -> list:
        """A heartbeat's frames from this broker: its instance, its heartbeat interval and liveness
        (its peers follow them: ``protocol.Pace``), and its shared-memory key's name (to a client
        only while every worker reads shared memory: see ``_all_workers_share``)."""
        key = self.shm_key if self.shm_key is not None and (not client or self._all_workers_share()) else None
        return P.encode(P.Heartbeat(sender=self.instance_id, shm=key.name if key is not None else None,
                                    interval_s=self.config.heartbeat_interval_s,
                                    liveness=self.config.heartbeat_liveness, **fields))

    def _all_workers_share(self) -> bool:
        """Clients send images by reference only while every worker reads shared memory: a task by
        reference goes only to such a worker in the hot path, and a remote worker must not sit idle
        beside a local client's queue. (Memoised per change of the workers.)"""
        d = self.dispatcher
        if self._share_memo[0] != d.workers_version:
            kinds = d.kinds()
            self._share_memo = (d.workers_version, bool(kinds) and all(shared for _, shared in kinds))
        return self._share_memo[1]

    def proves(self, proof: str | None, route: bytes) -> bool:
        """A peer's proof that it reads our shared-memory key (so it shares our host and user)."""
        return self.shm_key is not None and self.shm_key.verify(proof, route)

    def sweep_soon(self) -> None:
        """A client went away: if it died, its segments are garbage now (swept at the next beat)."""
        self._next_sweep_s = 0.0

    def read_ref(self, payload: Payload, max_bytes: int | None = None) -> bytes:
        """The image a task by reference names (raises ``shm.ShmError``)."""
        ref = bytes(payload.buffer if isinstance(payload, zmq.Frame) else payload).decode("ascii", "replace")
        return shm.read_input(shm.parse_ref(ref)[0], max_bytes or self.config.max_message_bytes)

    def stopping(self) -> bool:
        return self._stopping

    def uptime_s(self, now_s: float) -> float:
        return now_s - self._started_s

    def task_count(self) -> int:
        """Tasks admitted and not finished, wherever they are held."""
        return len(self.dispatcher.tasks) + (self.lane.tasks() if self.lane is not None else 0)

    def queue_depth(self) -> int:
        """Tasks waiting for a worker, wherever they are held."""
        return len(self.dispatcher.queue) + (self.lane.queued() if self.lane is not None else 0)

    def queued_bytes(self, origin: Origin | None = None) -> int:
        """Payload bytes waiting for a worker, wherever they are held: all, or one client's."""
        d, lane = self.dispatcher, self.lane
        if origin is None:
            return d.queued_bytes + (lane.queued_bytes() if lane is not None else 0)
        hot = lane.queued_bytes(origin.route[0]) if lane is not None and origin.front is self.native else 0
        return d.queued_bytes_of.get(origin.client, 0) + hot

    @staticmethod
    def _curve(config: BrokerConfig, ctx: zmq.Context) -> CurveServer | None:
        if config.keys_dir:
            return CurveServer(ctx, config.keys_dir)
        if config.secure:
            raise ConfigError("--secure, but the broker has no keys (--keys-dir / ENGINE_KEYS_DIR is not set); "
                              + HOW_TO_MAKE_KEYS)
        return None

    def stop(self) -> None:
        """Ask the loop to stop (thread- and signal-safe)."""
        self._stopping = True
        self._wakeup.fire()

    def close(self) -> None:
        for part in (*self.fronts, self.workers):
            part.close()
        if self.curve is not None:
            self.curve.close()
        logbound.flush_all()
        if self.shm_key is not None:
            self.shm_key.close()
        self._wakeup.close()
        if self._own_context:
            self.ctx.term()

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> None:
        """Route until ``stop``; then drain in-flight work for up to ``drain_timeout_s`` (not at all
        once no worker is connected)."""
        poller = zmq.Poller()
        for part in (*self.fronts, self.workers):
            part.register(poller)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        if self.lane is not None:  # it waits on the front and back itself, and returns when one of these has news
            self.lane.set_extras([item for item, _ in poller.sockets
                                  if item is not self.native.sock and item is not self.workers.sock])
        interval_s = self.config.heartbeat_interval_s
        next_beat_s = time.monotonic()
        drain_until_s = None
        log.info("broker %s: clients on %s, workers on %s", self.instance_id,
                 self.endpoints["front"], self.endpoints["back"])
        while True:
            if self._stopping and drain_until_s is None:
                drain_until_s = time.monotonic() + self.config.drain_timeout_s
                log.info("broker stopping: draining %d task(s) for up to %.1f s",
                         self.task_count(), self.config.drain_timeout_s)
            if drain_until_s is not None and (not self.task_count() or time.monotonic() >= drain_until_s
                                              or not self._has_workers()):
                break
            wake_s = min(next_beat_s, self.workers.next_probe_s(), *(f.next_flush_s() for f in self.fronts))
            timeout_ms = poll_timeout_ms(wake_s, time.monotonic())
            if drain_until_s is not None:
                timeout_ms = min(timeout_ms, 100)
            if self.lane is not None:
                self.lane.run(timeout_ms / 1000)  # the hot path waits, forwards, and returns for the rest
                events = dict(poller.poll(0))
            else:
                events = dict(poller.poll(timeout_ms))
            if self._wakeup.fd in events:
                self._wakeup.drain()
            now_s = time.monotonic()
            self.workers.handle(events, now_s)
            for front in self.fronts:
                front.handle(events, now_s)
            self.workers.dispatch()
            if self.lane is not None:
                self.lane.settle()
            now_s = time.monotonic()
            if now_s >= next_beat_s:
                self._beat(now_s)
                next_beat_s = now_s + interval_s
        left = self.task_count()
        if left:
            log.warning("broker stopped with %d task(s) unfinished; clients will resend them", left)

    def _has_workers(self) -> bool:
        """Whether any worker could still finish a task: draining waits for no one when none is connected
        (the tasks are left to their clients to resend, as after the drain's timeout)."""
        return any(not w.control for w in self.dispatcher.workers.values())

    def _beat(self, now_s: float) -> None:
        try:
            if self.lane is not None:
                self.lane.sync()
            self._sample_history(now_s)
            self.workers.beat(now_s)
            self.native.expire(now_s)
            self.quotas.forget_idle(now_s, self.dispatcher.per_client)
            if self.shm_key is not None and now_s >= self._next_sweep_s:
                # Segments of clients and brokers that died (SIGKILL). After a sweep that found some, the
                # next comes sooner: a worker still running a dead client's task writes its result later.
                found = shm.sweep_dead()
                self._next_sweep_s = now_s + (self.dispatcher.liveness_s if found else shm.SWEEP_INTERVAL_S)
            self._publish_metrics(now_s)
            self._descriptors.check(now_s)
            memtrim.trim()  # freed image buffers back to the OS, so RSS shows what is really held
            logbound.flush_due()  # the summaries of lines peers triggered (refused keys, bad messages)
        except Exception:  # a bug must not stop the broker: log it, try again next beat
            self.stats["internal_errors"] += 1
            log.exception("the periodic checks failed (a bug: please report); trying again at the next beat")

    def _sample_history(self, now_s: float) -> None:
        counts = self.metrics.counts()
        queued = self.queue_depth()
        self.history.sample(now_s, counts["completed"], counts["failed"], queued, self.task_count() - queued)

    def _publish_metrics(self, now_s: float) -> None:
        d = self.dispatcher
        rows = [WorkerRow(host=row["host"] or row["id"], slots=row["free"] + row["in_flight"], busy=row["in_flight"],
                          heartbeat_age_s=row["last_heartbeat_s_ago"], restarts=row.get("restarts", 0))
                for row in info_.hosts(d, now_s)]
        cache = self.cache.stats() if self.cache is not None else None
        self.metrics.publish_state(self.queue_depth(), self.task_count() - self.queue_depth(), rows,
                                   cache_bytes=cache.get("bytes") if cache else None,
                                   cache_entries=cache.get("entries") if cache else None)

    # ---- tasks -------------------------------------------------------------------
    def submit(self, origin: Origin, request: P.Request, payload: Payload) -> None:
        """Admit a task from any front end, or answer why not (the one entry point for tasks):
        ``admission.CHECKS`` in order, then the queue."""
        metrics = self.metrics
        metrics.received()
        metrics.bytes_in(len(payload))
        a = Admission(origin, request, payload, time.monotonic())
        for check in CHECKS:
            verdict = check(self, a)
            if verdict is not None:
                self._apply(a, verdict)
                return
        checked = a.checked
        task = Task(jid=self.dispatcher.new_jid(), origin=origin, task_id=request.task_id, request=request,
                    payload=payload, received_s=a.now_s, cache_key=a.cache_key, due_s=a.due_s, trace_id=a.trace_id,
                    needs=a.needs, accepted=checked.accepted if checked is not None else None)
        self.dispatcher.admit(task)
        if self.lane is not None:
            self.lane.queue_changed()
            if origin.front is self.native and request.options in (None, fastlane.NO_CACHE):
                self.lane.offer(task, cached=self.cache is not None)

    def _apply(self, a: Admission, verdict: Verdict) -> None:
        """Answer a request a check stopped (see ``admission``)."""
        kind, code, task_id = verdict.kind, verdict.code, a.request.task_id
        if kind == admission.REFUSED:
            self.metrics.refused(code)
            self.reply_error(a.origin, task_id, code, verdict.message)
        elif kind == admission.INVALID:
            self.metrics.failed(code)
            self.reply_error(a.origin, task_id, code, verdict.message)
        elif kind == admission.FAILED:
            self._refuse(a.origin, task_id, code, verdict.message)

    def holds(self, origin: Origin, task_id: str) -> bool:
        """A task of this client with this id is held already (here or in the hot path)."""
        return self.dispatcher.holds(origin, task_id) or (
            self.lane is not None and origin.front is self.native and self.lane.holds(origin.route[0], task_id))

    def cache_key(self, payload: Payload, canonical: str) -> str:
        """Input hash + canonical pipeline + engine version."""
        data = payload.buffer if isinstance(payload, zmq.Frame) else payload
        return ResultCache.key(data, canonical, __version__)

    def answer_from_cache(self, a: Admission) -> bool:
        """Answer from the result cache if it holds this result (counted either way)."""
        hit = self.cache.get(a.cache_key) if self.cache is not None and a.cache_key is not None else None
        self.metrics.cache(hit is not None, len(hit[0]) if hit is not None else 0)
        if hit is None:
            return False
        data, meta = hit
        meta.update(cache="hit", broker_ms=0.0)
        if a.trace_id:
            meta[tracing.KEY] = a.trace_id
        self.metrics.completed(None, None, time.monotonic() - a.now_s)
        self.metrics.bytes_out(len(data))
        a.origin.front.reply(a.origin, a.request.task_id, meta, data)
        return True

    def _refuse(self, origin: Origin, task_id: str, code: str, message: str) -> None:
        """A task refused at admission for its pipeline: counted as failed, never queued."""
        self.metrics.failed(code)
        self.reply_error(origin, task_id, code, message)

    def unoffered(self, needs: frozenset) -> str:
        """Why no connected worker can run a pipeline that uses ``needs`` (Majordomo's unknown service)."""
        offered = self.dispatcher.offered()
        missing = sorted(needs - offered)
        if not missing:
            return (f"no one connected worker offers all of {', '.join(sorted(needs))} (each is offered by some "
                    f"worker, but this pipeline needs them together)")
        return (f"unknown operation {missing[0]!r}{suggest(missing[0], offered)}: no connected worker offers "
                f"{'it' if len(missing) == 1 else ', '.join(repr(m) for m in missing)} "
                f"(offered: {', '.join(sorted(offered)) or 'none'})")

    def finish_ok(self, task: Task, meta: dict, payload: Payload) -> None:
        now_s = time.monotonic()
        sent_s = task.dispatched_s or now_s
        self.metrics.completed(sent_s - task.received_s, now_s - sent_s, now_s - task.received_s)
        self.metrics.bytes_out(len(payload))
        meta = dict(meta)
        meta["broker_ms"] = round((now_s - task.received_s) * 1000, 3)
        if task.trace_id:
            meta[tracing.KEY] = task.trace_id
        if task.cache_key is not None:
            self._keep(task, meta, payload)
        task.origin.front.reply(task.origin, task.task_id, meta, payload)

    def _keep(self, task: Task, meta: dict, payload: Payload) -> None:
        """A result into the cache (one by reference is read here; its client unlinks it)."""
        cache, key = self.cache, task.cache_key
        if cache is None or key is None:  # no cache, or a task that is not to be kept
            return
        kept = {k: v for k, v in meta.items() if k != "shm"}
        data = payload.bytes if isinstance(payload, zmq.Frame) else payload
        if meta.get("shm") is True:
            name = data.decode("ascii", "replace")
            try:
                data = shm.read_result(name, self.config.max_message_bytes)
            except shm.ShmError as exc:
                log.debug("task %s: result not cached (%s)", task.jid, exc)
                return
        cache.put(key, data, dict(kept, cache="miss"))

    def finish_error(self, task: Task, code: str, message: str, meta: dict | None = None) -> None:
        self.metrics.failed(code)
        pipeline = task.request.pipeline
        self.recent_failures.append({
            "at_unix_s": round(time.time(), 3), "code": code, "message": message[:RECENT_TEXT_CHARS],
            "pipeline": (pipeline if isinstance(pipeline, str) else "[json pipeline]")[:RECENT_TEXT_CHARS],
            "worker": str((meta or {}).get("worker", ""))[:RECENT_TEXT_CHARS]})
        if task.trace_id:
            meta = {**(meta or {}), tracing.KEY: task.trace_id}
        self.reply_error(task.origin, task.task_id, code, message, meta)

    def reply_error(self, origin: Origin, task_id: str | None, code: str, message: str,
                    meta: dict | None = None) -> None:
        origin.front.reply_error(origin, task_id, code, message, meta)

    def cancel(self, origin: Origin, task_id: str) -> None:
        if self.lane is not None and origin.front is self.native:
            self.lane.take(origin.route[0], task_id)
        task = self.dispatcher.cancel(origin, task_id)
        if task is None:
            return  # unknown or already done: the client ignores a late answer anyway
        self.metrics.cancelled()
        self.workers.cancel(task)
        self.reply_error(origin, task_id, TaskCancelled.code, "the task was cancelled by its client")

    def forget_origin(self, origin: Origin, why: str) -> None:
        """A peer went away: its tasks are dropped (a worker stops one it is running)."""
        if self.lane is not None and origin.front is self.native:
            self.lane.forget_route(origin.route[0])
        dropped = self.dispatcher.drop_origin(origin.key)
        for task in dropped:
            self.workers.cancel(task)
        if dropped:
            log.info("%s: dropped %d task(s)", why, len(dropped))

    def identity(self, frame: zmq.Frame, route: bytes) -> str | None:
        """The client: its key's name with CURVE (None: revoked), else its self-chosen routing id."""
        if self.curve is not None:
            return self.curve.identity(frame, CLIENTS)
        return peer_name(route)

    def info(self, you: str = "", *, history: bool = False) -> dict:
        """INFO's answer; with ``history``, the last minutes of samples too (``history.History``)."""
        if self.lane is not None:
            self.lane.sync()
        return info_.bounded(self, you, history=history)
