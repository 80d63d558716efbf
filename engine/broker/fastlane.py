"""Between the hot path and the broker's Python state: who holds which slot and task.

The broker's ``Dispatcher`` owns every worker's slots. Whenever its own queue is empty it
lends the free slots of each worker to the hot path (``hotpath.HotPath`` or its compiled
twin), which then admits, routes and answers tasks of the common shape with no Python per
task. Anything rarer takes the task back first (``adopt``): a cancel, a client or worker
going away, a worker draining, an expired lease, a straggler's copy, an error answer. From
then on the task is an ordinary ``Task`` in the Dispatcher, at the worker that runs it,
and every rule of the Python path applies to it unchanged.

While the broker's own queue holds tasks (a pipeline seen for the first time, options
the hot path leaves alone), its idle slots come back and every slot freed in the hot path
goes back too: the broker's tasks, older or rarer, go first; the hot path's queue waits,
and the two queues together hold at most ``max_queue`` tasks.

The hot path runs only where its checks are the whole of admission: no CURVE (a key's
identity is read per message) and no per-client quotas. Elsewhere the broker is all Python.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import protocol as P
from .. import sockutil
from ..pipeline_syntax import step_names
from . import hotpath
from .front import Origin
from .state import STRAGGLER_FACTOR, STRAGGLER_MIN_S, STRAGGLER_SCAN_S, Task, WorkerState, peer_name

if TYPE_CHECKING:
    from .core import Broker

log = logging.getLogger("engine.broker")

NO_CACHE = hotpath.NO_CACHE
MAX_PIPELINE_CHARS = 4096  # longer pipelines stay on the Python path (the hot path copies the text per task)
MAX_PIPELINES = 1024  # distinct pipeline texts registered at once (as the broker's checker memoises)


def wanted(broker: Broker) -> bool:
    """The hot path can run on this broker: its checks are the whole of admission here."""
    c = broker.config
    return (broker.curve is None and not c.client_max_in_flight and not c.client_rate_per_s
            and c.hot_path)


class FastLane:
    def __init__(self, broker: Broker, front: Any, back: Any) -> None:
        self.broker = broker
        self.d = broker.dispatcher
        config = broker.config
        self.core = hotpath.load(front, back, instance_id=broker.instance_id, max_queue=config.max_queue,
                                 lease_s=config.task_lease_s, max_queue_bytes=config.max_queue_bytes,
                                 max_route_bytes=config.client_max_queue_bytes)
        self.compiled = bool(getattr(self.core, "compiled", False))
        # A worker's kind (a bit) in the hot path: its declaration, and whether it reads shared memory.
        self._bits: dict[tuple[int | None, bool], int] = {}
        self._version = -1
        self._next_scan_s = 0.0
        self._pipelines = 0  # texts registered with the hot path since it was last cleared
        self.answered = 0  # tasks the hot path answered itself, since the start
        self.d.on_client_tasks = self._client_tasks
        self.d.lent = self.core.load_of

    # ---- the loop ----------------------------------------------------------------------
    def pump_front(self) -> list | None:
        return self.core.pump_front()

    def pump_back(self) -> list | None:
        frames = self.core.pump_back()
        if frames is not None:
            self.adopt(self.core.given())  # the task this answer is for, if the hot path held it
        return frames

    def set_extras(self, extras: list) -> None:
        self.core.set_extras(extras)

    def run(self, timeout_s: float) -> None:
        """The loop's wait: the hot path waits on the front and back and forwards until a message
        needs the broker (handled here), another socket has news, or ``timeout_s`` is up."""
        b = self.broker
        try:
            got = self.core.run(timeout_s)
        except Exception:  # a bug in the hot path: the message it was reading is lost, the broker goes on
            b.stats["internal_errors"] += 1
            log.exception("the hot path failed while waiting (a bug: please report)")
            return
        if got is None:
            return
        side, frames = got
        if side:
            self.adopt(self.core.given())  # the task this answer is for, if the hot path held it
        sockutil.handle(b.workers._on_message if side else b.native._on_message, frames, b.stats, log,
                        name="back" if side else "front")

    def settle(self) -> None:
        """After each turn of the loop: apply what the hot path did, then lend the free slots."""
        d = self.d
        if d.workers_version != self._version:
            self._version = d.workers_version
            self.core.clear_pipelines()  # masks are made for the workers of their time
            self._pipelines = 0
            self.adopt(self.core.take_queued())  # no worker of theirs may be left: the broker's rules decide
        self.sync()
        core = self.core
        if d.queue:  # the broker's own tasks wait: they go first, on slots taken back now
            self.reclaim()
            self.broker.workers.dispatch()
        waiting = bool(d.queue)
        core.accepting = not self.broker.stopping()
        core.hungry = waiting
        self.queue_changed()
        if not waiting:
            self._lend()

    def queue_changed(self) -> None:
        """The broker's own queue grew or shrank: the hot path's share of ``max_queue`` follows,
        and a task queued there is served first: the idle lent slots come back at once, before
        a request that came after it can take them."""
        d, config = self.d, self.broker.config
        self.core.max_queue = max(0, config.max_queue - len(d.queue))
        self.core.max_queue_bytes = max(0, config.max_queue_bytes - d.queued_bytes)
        if d.queue and not self.core.hungry:
            self.core.hungry = True
            self.reclaim()

    def stragglers(self, now_s: float) -> None:
        """Before the broker looks for stragglers: nothing queued anywhere and a slot idle
        here, the tasks held too long by slow workers come back, with the idle slots, so that
        ``Dispatcher.stragglers`` can copy them as it does its own."""
        d = self.d
        if now_s < self._next_scan_s or d.queue or d.task_s is None or self.core.queued() \
                or not self.core.idle_slots():
            return
        self._next_scan_s = now_s + STRAGGLER_SCAN_S
        slow_s = max(STRAGGLER_MIN_S, STRAGGLER_FACTOR * d.task_s)
        slow = [w for w in d.workers.values() if w.task_s is not None and w.task_s > slow_s]
        if slow and sum(len(self.adopt(self.core.take_held_before(w.wid, now_s - slow_s))) for w in slow):
            self.reclaim()

    def sync(self) -> None:
        """Counters, samples, slots given back and replies to hold: into the broker's books."""
        counts, samples, returned, held, done = self.core.collect()
        b, d = self.broker, self.d
        stats, metrics = b.stats, b.metrics
        if counts.received:
            metrics.received(counts.received)
            metrics.bytes_in(counts.bytes_in)
        if counts.completed:
            self.answered += counts.completed
            metrics.answered(counts.completed)
            metrics.bytes_out(counts.bytes_out)
        if counts.undeliverable:
            stats["undeliverable"] += counts.undeliverable
        workers = d.workers
        for wid, queue_s, worker_s, total_s in samples:
            metrics.timed(queue_s, worker_s, total_s)
            d.took(wid, worker_s)
        for wid, n, seen_s in done:
            worker = workers.get(wid)
            if worker is not None:
                worker.tasks_done += n
                worker.lease_expiries = 0
                d.seen(wid, seen_s)
        for wid in returned:
            self._give_back(wid, 1)
        native = b.native
        for route, frames in held:
            native.hold_reply(route, frames)

    def _give_back(self, wid: bytes, slots: int) -> None:
        worker = self.d.workers.get(wid)
        if worker is not None:
            self.d.add_slots(worker, slots)

    def _lend(self) -> None:
        d = self.d
        for worker in d.lendable():
            bit = self._bit(worker)
            if bit is not None:
                self.core.lend(worker.wid, bit, d.lend_all(worker))

    def _bit(self, worker: WorkerState) -> int | None:
        kind = (worker.declaration, worker.shm)
        bit = self._bits.get(kind)
        if bit is None:
            live = set(self.d.kinds())
            self._bits = {k: v for k, v in self._bits.items() if k in live}
            used = set(self._bits.values())
            free = next((i for i in range(hotpath.MAX_KINDS + 1) if i not in used), None)
            if free is None:
                return None  # more kinds of worker than bits: this one is served by the Python path
            bit = self._bits[kind] = free
            self.core.ref_mask = sum(1 << b for (_, shared), b in self._bits.items() if shared)
        return bit

    def rekind(self, worker: WorkerState) -> None:
        """A worker proved it reads shared memory (or no longer does): its slots in the hot path
        change kind, and the pipelines' masks are made again (``settle``: the workers changed,
        ``workers_version``)."""
        bit = self._bit(worker)
        if bit is None:
            self.adopt(self.core.retire(worker.wid))  # no bit left: the Python path serves it
            self.reclaim()
        else:
            self.core.set_kind(worker.wid, bit)

    # ---- admission ---------------------------------------------------------------------
    def offer(self, task: Task, cached: bool) -> None:
        """A task the Python path admitted: its pipeline may take the hot path from now on."""
        pipeline = task.request.pipeline
        if not isinstance(pipeline, str) or len(pipeline) > MAX_PIPELINE_CHARS:
            return
        mask = 0
        for of_kind in self.d.kinds().values():  # one look per kind of worker, however many there are
            worker = next(iter(of_kind.values()))
            if worker.takes(task):
                bit = self._bit(worker)
                if bit is not None:
                    mask |= 1 << bit
        if mask:
            if self._pipelines >= MAX_PIPELINES:  # bounded: a client sending ever new texts starts it afresh
                self.core.clear_pipelines()
                self._pipelines = 0
            self.core.add_pipeline(pipeline, mask, cached)
            self._pipelines += 1

    def holds(self, route: bytes, task_id: str) -> bool:
        return self.core.holds(route, task_id)

    def _client_tasks(self, task: Task, delta: int) -> None:
        if task.origin.front is self.broker.native:
            self.core.note_held(task.origin.route[0], task.task_id, delta > 0)

    # ---- tasks back to the Python path -----------------------------------------------------
    def adopt(self, taken: Iterable[hotpath.Taken]) -> list[Task]:
        """Make ordinary ``Task`` objects of tasks the hot path gave back, where they were:
        queued (at the front, in their order) or at their worker."""
        b, d = self.broker, self.d
        tasks, queued = [], []
        for t in taken:
            checked = b.pipelines.check(t.pipeline)
            accepted = getattr(checked, "accepted", None)
            task = Task(jid=t.jid, origin=Origin(b.native, (t.route,), client=peer_name(t.route)), task_id=t.task_id,
                        request=P.Request(task_id=t.task_id, pipeline=t.pipeline, options=t.options,
                                          ref=True if t.ref else None),
                        payload=t.payload, received_s=t.received_s, needs=step_names(t.pipeline), accepted=accepted)
            if t.worker is None or not d.adopt_running(task, t.worker, t.dispatched_s, t.lease_due_s):
                d.adopt_queued(task)
                queued.append(task)
            tasks.append(task)
        if queued:
            d.enqueue_front(queued)
        return tasks

    def take(self, route: bytes, task_id: str) -> None:
        taken = self.core.take(route, task_id)
        if taken is not None:
            self.adopt([taken])

    def forget_route(self, route: bytes) -> None:
        self.adopt(self.core.remove_route(route))

    def retire(self, wid: bytes) -> None:
        self.adopt(self.core.retire(wid))

    def take_expired(self, now_s: float) -> None:
        self.adopt(self.core.take_expired(now_s))

    def reclaim(self) -> None:
        for wid, slots in self.core.reclaim():
            self._give_back(wid, slots)

    # ---- what INFO and the metrics read ----------------------------------------------------
    def queued(self) -> int:
        return self.core.queued()

    def queued_bytes(self, route: bytes | None = None) -> int:
        """Payload bytes queued in the hot path: all, or one client's (its routing id)."""
        core = self.core
        return core.route_queued_bytes(route) if route is not None else core.bytes_queued()

    def tasks(self) -> int:
        return self.core.tasks()

    def load_of(self, wid: bytes) -> tuple[int, int]:
        return self.core.load_of(wid)

    def describe(self) -> dict:
        return {"compiled": self.compiled, "answered": self.answered, "queued": self.core.queued(),
                "tasks": self.core.tasks(), "idle_slots": self.core.idle_slots()}
