"""The broker's bookkeeping, with no sockets: tasks, the queue, workers and their slots.

LRU readiness: the workers that have a free slot are kept in one ordered map per kind of
worker (its declaration of the operations: workers of one kind take the same tasks), least
recently used first, each stamped with when it was last used. A task goes to the least
recently used worker among the first of each kind that takes it, so the pick costs one look
per kind (bounded by ``max_declarations``), however many workers are idle; that worker
then moves to the end (or leaves when it has no slot left). A finished task gives its slot
back and moves its worker to the end, so work spreads over all workers.
"""
from __future__ import annotations

import itertools
import json
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from ..protocol import Request
from .config import (
    MAX_LIVE_DECLARATIONS,
    MAX_RETRIES,
    MAX_SLOTS_PER_HOST,
    MAX_SLOTS_PER_WORKER,
    MAX_WORKERS,
    MAX_WORKERS_PER_HOST,
)

if TYPE_CHECKING:
    import zmq

    from .front import Origin

# An image as the broker holds it: the client's frame, forwarded untouched (its bytes, or the
# name of a shared-memory segment), or bytes (a compat request's decoded image, a cached result).
Payload: TypeAlias = "zmq.Frame | bytes"

BLAME_ALL = -1  # remove_worker: every task it held counts an attempt (it vanished: any could be at fault)
# A batch's tail must not wait on one slow device: when nothing is queued and a worker is
# free, a task held this many typical task times is run a second time there (first answer wins).
STRAGGLER_FACTOR = 3.0
MAX_DECLARATIONS = 64  # distinct declarations of the operations remembered (engine versions in one cluster)
MAX_SKIPPED = 64  # queued tasks one dispatch pass steps over (no free worker offers their operations)
STRAGGLER_MIN_S = 0.05
STRAGGLER_SCAN_S = 0.05  # how often the held tasks are looked through for one (O(tasks at workers))
TASK_TIME_EWMA = 0.1  # weight of the newest worker time in the running mean


@dataclass(eq=False)
class Task:
    """One task as the broker holds it, from admission to its reply."""

    jid: int  # the broker's own id for it, what workers see
    origin: Origin  # where the reply goes
    task_id: str  # the client's id
    request: Request
    payload: Payload  # the image frame, forwarded untouched
    received_s: float
    attempts: int = 0  # worker failures while holding it
    worker: bytes | None = None  # who runs it now
    cache_key: str | None = None  # where its result goes in the result cache
    lease_due_s: float = float("inf")  # when its worker must have answered (monotonic)
    trace_id: str | None = None  # the client's trace id (options.trace_id), for log lines and the reply
    copied: bool = False  # a second copy was sent to an idle worker (a straggler): first answer wins
    dispatched_s: float = 0.0  # when it was last handed to a worker (monotonic; 0: never)
    due_s: float | None = None  # its deadline, if the request set one (monotonic)
    holders: set = field(default_factory=set)  # every worker it was handed to: only they may answer it
    needs: frozenset | None = None  # the operations its pipeline uses (None: unknown, any worker will do)
    accepted: frozenset | None = None  # the declarations (ids) its pipeline checks against; None: any
    queued: bool = False  # waiting in the queue: its payload's bytes count in ``Dispatcher.queued_bytes``

    dedup_key: Hashable | None = field(default=None, init=False)  # set once, at admission


def peer_name(route: bytes) -> str:
    """A routing id for people: as text when it is printable ASCII (workers name themselves
    ``host-pid-xxxxxx``), else in hex."""
    text = route.decode("ascii", "replace")
    return text if route.isascii() and text.isprintable() else route.hex()


def _declaration_text(ops: dict) -> str:
    try:
        return json.dumps(ops, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # keys of mixed types: its own declaration
        return repr(ops)


def _mean(mean: float | None, sample: float) -> float:
    return sample if mean is None else (1 - TASK_TIME_EWMA) * mean + TASK_TIME_EWMA * sample


def _client(task: Task) -> str:
    return getattr(task.origin, "client", "")


def payload_bytes(payload: Payload) -> int:
    """The bytes an image frame holds in memory (a frame, bytes, or a shared-memory name)."""
    try:
        return len(payload)
    except TypeError:
        return 0


@dataclass(eq=False)
class WorkerState:
    wid: bytes
    free: int
    expiry_s: float
    host: str = ""
    pid: int = 0
    ops: dict | None = None
    processes: int | None = None  # pool processes, as the worker says (slots may be more: prefetch)
    joined_s: float = 0.0
    last_seen_s: float = 0.0
    tasks_done: int = 0
    draining: bool = False  # takes no new task; finishes those it holds
    lease_expiries: int = 0  # leases it let expire in a row
    taken_back: set = field(default_factory=set)  # jids whose lease expired here: their answer frees the slot
    tasks: dict[int, Task] = field(default_factory=dict)  # jid -> task, in flight here
    group: bytes | None = None  # a pool process: its host's control connection (which speaks for it)
    control: bool = False  # a host's control connection: no slots, never given a task
    tasks_done_before: int = 0  # a control: tasks done by its processes that are gone
    task_s: float | None = None  # running mean of its worker times (hand-out to answer)
    offers: frozenset | None = None  # the operations it declared in READY (None: not said, all)
    declaration: int | None = None  # which distinct declaration of the operations it sent (ids: Dispatcher)
    shm: bool = False  # it proved it shares the broker's host: tasks by reference reach it as they are
    slots: int = 0  # what its READYs announced in all (bounded per worker and per host: ``Dispatcher._claim``)
    # A host's control connection: its host's CPU (% busy, all cores) and memory, from its latest heartbeat
    # that carried them (None: an older worker, or a host without /proc).
    cpu_percent: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None

    def can_run(self, needs: frozenset | None) -> bool:
        return needs is None or self.offers is None or needs <= self.offers

    def takes(self, task: Task) -> bool:
        """It offers every operation of the task's pipeline, in a version that accepts its parameters."""
        accepted = task.accepted
        return self.can_run(task.needs) and (accepted is None or self.declaration is None
                                             or self.declaration in accepted)

    def report_load(self, cpu_percent: float | None, mem_used_bytes: int | None,
                    mem_total_bytes: int | None) -> None:
        """Keep the host's load a heartbeat reported; values out of range are dropped."""
        if cpu_percent is not None and 0 <= cpu_percent <= 100:
            self.cpu_percent = round(float(cpu_percent), 1)
        if mem_total_bytes is not None and mem_used_bytes is not None and 0 <= mem_used_bytes <= mem_total_bytes:
            self.mem_used_bytes, self.mem_total_bytes = mem_used_bytes, mem_total_bytes

    def describe(self, now_s: float, lent: tuple[int, int] = (0, 0)) -> dict:
        """Its row in INFO; ``lent``: (idle, running) slots it has lent to the hot path."""
        in_flight = len(self.tasks) + lent[1]
        return {"id": peer_name(self.wid), "host": self.host, "pid": self.pid, "processes": self.processes,
                "free": self.free + lent[0],
                "in_flight": in_flight, "busy": bool(in_flight), "tasks_done": self.tasks_done,
                "draining": self.draining, "lease_expiries": self.lease_expiries,
                "last_heartbeat_s_ago": round(now_s - self.last_seen_s, 3),
                "joined_s_ago": round(now_s - self.joined_s, 3), "cpu_percent": self.cpu_percent,
                "mem_used_bytes": self.mem_used_bytes, "mem_total_bytes": self.mem_total_bytes}


class Dispatcher:
    """Queue, workers and slots. Admission, hand-out and answers are O(1) per task; the
    methods that scan say so in their docstrings: ``cancel`` of a queued task and
    ``drop_origin`` (O(queue)), the lease and straggler checks (O(tasks at workers)), a host's
    pool processes (O(workers)) and the dispatch pass (O(queue) at worst)."""

    def __init__(self, *, max_queue: int, liveness_s: float, max_retries: int = MAX_RETRIES,
                 max_workers: int = MAX_WORKERS, max_workers_per_host: int = MAX_WORKERS_PER_HOST,
                 max_slots_per_host: int = MAX_SLOTS_PER_HOST,
                 max_declarations: int = MAX_LIVE_DECLARATIONS) -> None:
        self.max_queue = max_queue
        self.max_workers = max_workers
        self.max_workers_per_host = max_workers_per_host
        self.max_slots_per_host = max_slots_per_host
        self.max_declarations = max_declarations
        self._host_workers: Counter[str] = Counter()  # registered workers per host name
        self._host_slots: Counter[str] = Counter()  # the slots their READYs announced (``WorkerState.slots``)
        self._live: Counter[int] = Counter()  # declaration id -> connected workers that sent it
        # Kinds of worker, (declaration, reads shared memory) -> its workers (pool processes and plain
        # workers, not control connections): what the pipeline checks, the hot path's masks and the
        # offer of shared memory depend on. ``workers_version`` changes when a kind comes or goes,
        # not when one more worker of a known kind joins, so registrations do not undo those memos.
        self._kinds: dict[tuple, dict[bytes, WorkerState]] = {}
        self.liveness_s = liveness_s
        self.max_retries = max_retries  # attempts past this are not requeued: the caller fails them
        self.workers: dict[bytes, WorkerState] = {}
        self.queue: deque[Task] = deque()
        self.tasks: dict[int, Task] = {}  # every admitted, unfinished task
        self._by_key: dict[Hashable, int] = {}
        self.per_client: Counter[str] = Counter()  # unfinished tasks per client identity (quotas)
        self.queued_bytes = 0  # payload bytes of the tasks in ``queue`` (see ``_enqueued``)
        self.queued_bytes_of: Counter[str] = Counter()  # the same per client identity
        # Workers with a free slot: kind (declaration) -> wid -> when it was last used, least recent first.
        self._ready: dict[int | None, OrderedDict[bytes, int]] = {}
        self._ready_kind: dict[bytes, int | None] = {}  # wid -> its kind in ``_ready``
        self._used = itertools.count()
        self.looks = 0  # workers looked at by ``_ready_for`` since the start (its cost, for tests)
        self._jids = itertools.count(1)
        self.task_s: float | None = None  # running mean of worker times (dispatch to answer)
        self._next_scan_s = 0.0
        self._runnable: dict[frozenset, bool | None] = {}  # can_run's answers until the workers change
        self.workers_version = 0  # changes whenever a kind of worker comes or goes (see ``_kinds``)
        self._schema: tuple[int, dict] = (-1, {})
        self._declarations: tuple[int, dict[int, dict]] = (-1, {})
        self._declaration_ids: dict[str, int] = {}  # a declaration's text -> its id (ids never reused)
        self._next_declaration = itertools.count(1)
        # Set by the hot path's glue (fastlane): a client's task count changes (+1/-1), and what a
        # worker lent it (idle slots, tasks running there).
        self.on_client_tasks: Callable[[Task, int], None] | None = None
        self.lent: Callable[[bytes], tuple[int, int]] = lambda wid: (0, 0)

    # ---- tasks -------------------------------------------------------------------
    def new_jid(self) -> int:
        return next(self._jids)

    def holds(self, origin: Origin, task_id: str) -> bool:
        key = origin.dedup_key(task_id)
        return key is not None and key in self._by_key

    def queue_full(self) -> bool:
        return len(self.queue) >= self.max_queue

    def admit(self, task: Task) -> None:
        self.adopt_queued(task)
        self.queue.append(task)
        self._enqueued(task)

    def enqueue_front(self, tasks: list[Task]) -> None:
        """Held tasks back at the front of the queue, in their order (given back by the hot path)."""
        self.queue.extendleft(reversed(tasks))
        for task in tasks:
            self._enqueued(task)

    def _enqueued(self, task: Task) -> None:
        if not task.queued:
            task.queued = True
            size = payload_bytes(task.payload)
            self.queued_bytes += size
            self.queued_bytes_of[_client(task)] += size

    def _dequeued(self, task: Task) -> None:
        if task.queued:
            task.queued = False
            size, client = payload_bytes(task.payload), _client(task)
            self.queued_bytes -= size
            self.queued_bytes_of[client] -= size
            if self.queued_bytes_of[client] <= 0:
                del self.queued_bytes_of[client]

    def adopt_queued(self, task: Task) -> None:
        """Hold a task (admitted here, or given back by the hot path) without queueing it."""
        self.tasks[task.jid] = task
        task.dedup_key = key = task.origin.dedup_key(task.task_id)
        if key is not None:
            self._by_key[key] = task.jid
        self.per_client[_client(task)] += 1
        if self.on_client_tasks is not None:
            self.on_client_tasks(task, 1)

    def adopt_running(self, task: Task, wid: bytes, dispatched_s: float, lease_due_s: float) -> bool:
        """A task the hot path gave back while ``wid`` runs it, on the slot it was lent:
        held here at that worker. False if the worker is unknown (the caller queues it)."""
        worker = self.workers.get(wid)
        if worker is None:
            return False
        self.adopt_queued(task)
        worker.tasks[task.jid] = task
        task.worker = wid
        task.holders.add(wid)
        task.dispatched_s = dispatched_s
        task.lease_due_s = lease_due_s
        return True

    def finish(self, jid: int) -> Task | None:
        """Forget a task (done, failed or cancelled). Its worker slot is not touched."""
        task = self.tasks.pop(jid, None)
        if task is not None:
            self._dequeued(task)
        if task is not None and task.dedup_key is not None:
            self._by_key.pop(task.dedup_key, None)
        if task is not None:
            self.per_client[_client(task)] -= 1
            if self.per_client[_client(task)] <= 0:
                del self.per_client[_client(task)]
            if self.on_client_tasks is not None:
                self.on_client_tasks(task, -1)
        return task

    def assignments(self, now_s: float = 0.0, lease_s: float = float("inf"),
                    grace_s: float = 0.0) -> Iterator[tuple[Task, WorkerState]]:
        """Pair queued tasks with free workers that offer their operations, LRU first, until
        one side runs out. A task no free worker can run keeps its place at the front (up to
        ``MAX_SKIPPED`` are stepped over per pass). Each task gets a lease: ``lease_s``, or
        its deadline plus ``grace_s`` if that is sooner."""
        skipped: list[Task] = []
        try:
            while self.queue and self._ready:
                task = self.queue.popleft()
                if task.jid not in self.tasks:  # finished while queued (cancel, late reply)
                    continue
                wid = self._ready_for(task)
                if wid is None:
                    skipped.append(task)
                    if len(skipped) >= MAX_SKIPPED:
                        break
                    continue
                worker = self._take_slot(wid)
                worker.tasks[task.jid] = task
                self._dequeued(task)
                task.worker = wid
                task.holders.add(wid)
                task.dispatched_s = now_s
                task.lease_due_s = now_s + lease_s if task.due_s is None else min(now_s + lease_s, task.due_s + grace_s)
                yield task, worker
        finally:
            self.queue.extendleft(reversed(skipped))

    def _ready_for(self, task: Task, exclude: set | frozenset = frozenset()) -> bytes | None:
        """The least recently used free worker that offers every operation ``task`` needs:
        one look per kind of worker, plus one per worker in ``exclude`` (a straggler's holders)."""
        workers, best, best_used = self.workers, None, -1
        for ready in self._ready.values():
            for wid, used in ready.items():
                self.looks += 1
                if wid in exclude:
                    continue
                if workers[wid].takes(task) and (best is None or used < best_used):
                    best, best_used = wid, used
                break  # its kind: the first that is not excluded tells for all
        return best

    def _set_ready(self, worker: WorkerState) -> None:
        """``worker`` has a free slot and was just used: last in its kind's order."""
        wid, kind = worker.wid, worker.declaration
        if self._ready_kind.get(wid, kind) != kind:  # it declared its operations again, differently
            self._unset_ready(wid)
        self._ready_kind[wid] = kind
        ready = self._ready.get(kind)
        if ready is None:
            ready = self._ready[kind] = OrderedDict()
        ready.pop(wid, None)
        ready[wid] = next(self._used)

    def _unset_ready(self, wid: bytes) -> None:
        if wid not in self._ready_kind:
            return
        kind = self._ready_kind.pop(wid)
        ready = self._ready[kind]
        del ready[wid]
        if not ready:
            del self._ready[kind]

    def can_run(self, needs: frozenset | None) -> bool | None:
        """Whether some connected worker offers every operation in ``needs``; None when no
        worker has said what it offers (none connected yet): the task may wait for one."""
        if needs is None:
            return True
        known = self._runnable.get(needs, ...)
        if known is not ...:
            return known
        kinds = self._kinds.values()  # one worker per kind tells for all of its kind
        answer = None if not kinds else any(next(iter(of_kind.values())).can_run(needs) for of_kind in kinds)
        if len(self._runnable) > 4096:
            self._runnable.clear()
        self._runnable[needs] = answer
        return answer

    def _workers_changed(self) -> None:
        self._runnable.clear()
        self.workers_version += 1

    def schema(self) -> dict:
        """The operations the connected workers declared, with their parameters (the oldest
        declaration of each name wins), made again only after the workers change."""
        version, schema = self._schema
        if version != self.workers_version:
            schema = {}
            for declared in self.declarations().values():
                for name, declaration in declared.items():
                    schema.setdefault(name, declaration)
            self._schema = (self.workers_version, schema)
        return schema

    def offered(self) -> frozenset:
        """Every operation some connected worker offers."""
        return frozenset(op for w in self.workers.values() if w.offers for op in w.offers)

    def declarations(self) -> dict[int, dict]:
        """Each distinct declaration of the operations among the connected workers, by id
        (oldest first), with the entries the broker can read: workers of different engine
        versions declare different parameters, and a pipeline is checked against each."""
        version, found = self._declarations
        if version != self.workers_version:
            found = {}
            for worker in self.workers.values():
                if worker.declaration is not None and worker.declaration not in found:
                    readable = {n: d for n, d in (worker.ops or {}).items() if isinstance(d, dict)}
                    if readable:
                        found[worker.declaration] = readable
            found = dict(sorted(found.items()))
            self._declarations = (self.workers_version, found)
        return found

    def differing_ops(self) -> list[str]:
        """The operations the connected workers declare differently (another engine version's
        parameters): INFO lists one declaration of each, which is exact for the others only."""
        first = self.schema()
        return sorted({name for declared in self.declarations().values()
                       for name, declaration in declared.items() if first[name] != declaration})

    def refusal(self, wid: bytes, host: str, ops: dict | None) -> str | None:
        """Why a READY cannot register (or declare) ``wid``, or None: the bounds on workers,
        per host and in all, and on distinct declarations among connected workers."""
        worker = self.workers.get(wid)
        if worker is None:
            if len(self.workers) >= self.max_workers:
                return f"the broker has {len(self.workers)} workers registered, its limit (--max-workers)"
            if self._host_workers[host] >= self.max_workers_per_host:
                return (f"host {host[:64]!r} has {self._host_workers[host]} workers registered, the limit per host "
                        f"(--max-workers-per-host)")
        if ops is not None:
            known = self._declaration_ids.get(_declaration_text(ops))
            mine = worker.declaration if worker is not None else None
            live = len(self._live) - (1 if mine is not None and self._live[mine] == 1 else 0)
            if (known is None or known not in self._live) and live >= self.max_declarations:
                return (f"the connected workers declare {len(self._live)} different sets of operations, the limit "
                        f"(--max-declarations): run one engine version per cluster, or raise it")
        return None

    def _declaration_of(self, ops: dict) -> int:
        """The id of a declaration: the same text, the same id (bounded: when full, only the
        connected workers' declarations are kept)."""
        text = _declaration_text(ops)
        known = self._declaration_ids.get(text)
        if known is not None:
            return known
        if len(self._declaration_ids) >= MAX_DECLARATIONS:
            live = {w.declaration for w in self.workers.values()}
            self._declaration_ids = {t: i for t, i in self._declaration_ids.items() if i in live}
        known = self._declaration_ids[text] = next(self._next_declaration)
        return known

    def unrunnable(self) -> list[Task]:
        """Queued tasks that no connected worker can run any more: none offers their
        operations, or none of the declarations their pipeline checked against is left
        (O(queue); ``can_run``'s answers are remembered until the workers change)."""
        live = {w.declaration for w in self.workers.values() if not w.control}
        return [t for t in self.queue if t.jid in self.tasks and (
            self.can_run(t.needs) is False
            or (t.accepted is not None and None not in live and not t.accepted & live))]

    def release(self, wid: bytes, jid: int) -> Task | None:
        """A worker is done with ``jid``: give its slot back if the task was assigned to it."""
        worker = self.workers.get(wid)
        task = worker.tasks.pop(jid, None) if worker else None
        if task is None and worker is not None and jid in worker.taken_back:
            worker.taken_back.discard(jid)  # late, after its lease: the slot comes back, the answer is late
            self._add_slots(worker, 1)
        if task is not None and worker is not None:
            others = self.holding(task)
            task.worker = others[0] if others else None  # a copy may still run elsewhere
            worker.tasks_done += 1
            worker.lease_expiries = 0
            self._add_slots(worker, 1)
        return task

    def holding(self, task: Task) -> list[bytes]:
        """The workers that hold ``task`` now (two while a straggler's copy runs)."""
        return [wid for wid in task.holders if wid in self.workers and task.jid in self.workers[wid].tasks]

    def took(self, wid: bytes, seconds: float) -> None:
        """Worker ``wid`` answered a task ``seconds`` after it was handed out (the straggler yardstick)."""
        self.task_s = _mean(self.task_s, seconds)
        worker = self.workers.get(wid)
        if worker is not None:
            worker.task_s = _mean(worker.task_s, seconds)

    def stragglers(self, now_s: float) -> Iterator[tuple[Task, WorkerState]]:
        """Nothing queued and a worker free: copies of the tasks held longest (over
        ``STRAGGLER_FACTOR`` typical task times) by a slow worker (its own tasks take that
        much longer: a task that is slow anywhere, a hostile one, is not doubled) go to free
        workers, one copy per task at most."""
        if self.queue or not self._ready or self.task_s is None or now_s < self._next_scan_s:
            return
        self._next_scan_s = now_s + STRAGGLER_SCAN_S
        slow_s = max(STRAGGLER_MIN_S, STRAGGLER_FACTOR * self.task_s)
        late_s = now_s - slow_s
        held = sorted((t for w in self.workers.values() if w.task_s is not None and w.task_s > slow_s
                       for t in w.tasks.values() if not t.copied and t.dispatched_s < late_s and t.jid in self.tasks),
                      key=lambda t: t.dispatched_s)
        for task in held:
            wid = self._ready_for(task, exclude=task.holders)
            if wid is None:
                return
            worker = self._take_slot(wid)
            worker.tasks[task.jid] = task
            task.holders.add(wid)
            task.copied = True
            yield task, worker

    def expired_leases(self, now_s: float) -> list[Task]:
        """Tasks whose worker has not answered in time (O(tasks at workers))."""
        late = {t.jid: t for w in self.workers.values() for t in w.tasks.values() if t.lease_due_s <= now_s}
        return list(late.values())  # a task with a straggler's copy is held twice: listed once

    def take_back(self, task: Task, *, requeue: bool = True) -> WorkerState | None:
        """A lease expired: the task leaves its worker (the slot stays taken: the worker
        still works on it, or is stuck), counts an attempt and, with ``requeue`` and within
        ``max_retries``, goes to the front of the queue (else the caller ends it)."""
        worker = self.workers.get(task.worker) if task.worker is not None else None
        if worker is not None:
            worker.tasks.pop(task.jid, None)
            worker.taken_back.add(task.jid)
            worker.lease_expiries += 1
        task.attempts += 1
        if requeue and not self.exhausted(task):
            self.requeue(task)
        else:
            task.worker = None
        return worker

    def requeue(self, task: Task) -> None:
        """Put a task back at the front: it was admitted already, so the queue limit does not apply."""
        task.worker = None
        self.queue.appendleft(task)
        self._enqueued(task)

    def cancel(self, origin: Origin, task_id: str) -> Task | None:
        """Forget a task by its client id; returns it (its ``worker`` says if one is running it)."""
        jid = self._by_key.get(origin.dedup_key(task_id))
        task = self.finish(jid) if jid is not None else None
        if task is not None:
            self._unqueue([task])
        return task

    def drop_origin(self, origin_key: Hashable) -> list[Task]:
        """Forget every task of a client that went away, queued or at a worker (whose slot
        comes back with its answer, as after ``cancel``)."""
        dropped = [t for t in self.tasks.values() if t.origin.key == origin_key]
        for task in dropped:
            self.finish(task.jid)
        self._unqueue(dropped)
        return dropped

    def drop_queued(self, tasks: list[Task]) -> None:
        """Finish queued tasks (failed by the caller), in one pass over the queue."""
        for task in tasks:
            self.finish(task.jid)
        self._unqueue(tasks)

    def _unqueue(self, finished: list[Task]) -> None:
        """Take finished tasks out of the queue at once: they must neither count towards
        ``max_queue`` nor keep their images alive until a worker is free (O(queue))."""
        if any(t.worker is None for t in finished):
            self.queue = deque(t for t in self.queue if t.jid in self.tasks)

    # ---- workers -----------------------------------------------------------------
    def ready(self, wid: bytes, slots: int, now_s: float, *, host: str = "", pid: int = 0,
              ops: dict | None = None, processes: int | None = None, group: bytes | None = None,
              control: bool = False) -> bool:
        """READY from a worker (a pool process, with its host's ``group``) or a host's
        control connection (``control``: no slots); returns True if it is new."""
        found = self.workers.get(wid)
        new = found is None
        if found is None:
            worker = self.workers[wid] = WorkerState(wid=wid, free=0, expiry_s=now_s + self.liveness_s,
                                                     joined_s=now_s, group=group, control=control, host=host)
            self._host_workers[host] += 1
        else:
            worker = found
        worker.pid = pid or worker.pid
        if ops is not None:
            if not new:
                self._leave(worker)
            worker.ops = ops
            worker.offers = frozenset(ops)
            self._forget_declaration(worker)
            worker.declaration = self._declaration_of(ops)
            self._live[worker.declaration] += 1
            if wid in self._ready_kind:
                self._set_ready(worker)  # its kind changed
        if new or ops is not None:
            self._enter(worker)
        if processes is not None:
            worker.processes = processes
        self.seen(wid, now_s)
        self._add_slots(worker, self._claim(worker, slots))
        return new

    def seen(self, wid: bytes, now_s: float) -> bool:
        worker = self.workers.get(wid)
        if worker is None:
            return False
        worker.expiry_s = now_s + self.liveness_s
        worker.last_seen_s = now_s
        return True

    def remove_worker(self, wid: bytes, blame: int | None = BLAME_ALL) -> list[Task]:
        """Forget a worker; returns its unfinished tasks. Which of them count an attempt: all
        (``BLAME_ALL``), the one with jid ``blame``, or none. Those within ``max_retries`` go
        back to the front of the queue; the others (``exhausted``) are left for the caller
        to fail: they are never queued (O(its tasks), no O(queue) removal)."""
        worker = self.workers.pop(wid, None)
        self._unset_ready(wid)
        if worker is None:
            return []
        self._leave(worker)
        self._forget_declaration(worker)
        self._count(self._host_workers, worker.host, -1)
        self._count(self._host_slots, worker.host, -worker.slots)
        if worker.group is not None and worker.group in self.workers:
            self.workers[worker.group].tasks_done_before += worker.tasks_done
        orphans = []
        for task in worker.tasks.values():
            if task.jid not in self.tasks:
                continue
            others = self.holding(task)
            if others:  # its copy still runs elsewhere: that one answers
                task.worker = others[0]
            else:
                orphans.append(task)
        for task in reversed(orphans):
            if blame == BLAME_ALL or blame == task.jid:
                task.attempts += 1
            if not self.exhausted(task):
                self.requeue(task)
            else:
                task.worker = None
        return orphans

    def kinds(self) -> dict[tuple, dict[bytes, WorkerState]]:
        """The kinds of worker connected now, (declaration, shm) -> its workers (never empty)."""
        return self._kinds

    def set_shm(self, worker: WorkerState, shared: bool) -> None:
        """The worker proved (or no longer proves) that it reads shared memory: its kind changes."""
        self._leave(worker)
        worker.shm = shared
        self._enter(worker)

    def _enter(self, worker: WorkerState) -> None:
        if worker.control or worker.wid not in self.workers:
            return
        of_kind = self._kinds.setdefault((worker.declaration, worker.shm), {})
        of_kind[worker.wid] = worker
        if len(of_kind) == 1:
            self._workers_changed()

    def _leave(self, worker: WorkerState) -> None:
        kind = (worker.declaration, worker.shm)
        of_kind = self._kinds.get(kind)
        if of_kind is not None and of_kind.pop(worker.wid, None) is not None and not of_kind:
            del self._kinds[kind]
            self._workers_changed()

    def _forget_declaration(self, worker: WorkerState) -> None:
        if worker.declaration is not None:
            self._count(self._live, worker.declaration, -1)

    @staticmethod
    def _count(counter: Counter, key: Hashable, delta: int) -> None:
        counter[key] += delta
        if counter[key] <= 0:
            del counter[key]

    def exhausted(self, task: Task) -> bool:
        """It has failed on workers more often than ``max_retries`` allows."""
        return task.attempts > self.max_retries

    def pool_processes(self, control: bytes) -> list[bytes]:
        """The pool processes a host's control connection speaks for (O(workers))."""
        return [wid for wid, w in self.workers.items() if w.group == control and not w.control]

    def pool_process(self, control: bytes, name: str) -> WorkerState | None:
        """The pool process ``name`` if the control connection ``control`` speaks for it."""
        worker = self.workers.get(name.encode())
        return worker if worker is not None and worker.group == control and not worker.control else None

    def group_alive(self, worker: WorkerState, now_s: float) -> bool:
        control = self.workers.get(worker.group) if worker.group is not None else None
        return control is not None and control.control and control.expiry_s > now_s

    def drain(self, wid: bytes) -> None:
        worker = self.workers.get(wid)
        if worker is not None:
            worker.draining = True
            self._unset_ready(wid)

    def expired(self, now_s: float) -> list[bytes]:
        """Workers silent for the liveness interval; a pool process busy on a long task (it
        cannot heartbeat) lives as long as its host's control connection does. An idle one that
        does not heartbeat is dropped, whoever speaks for its host: one heartbeating connection
        cannot keep thousands of registrations alive."""
        return [wid for wid, w in self.workers.items()
                if w.expiry_s <= now_s and not (self._busy(w) and self.group_alive(w, now_s))]

    def _busy(self, worker: WorkerState) -> bool:
        return bool(worker.tasks) or self.lent(worker.wid)[1] > 0

    def _take_slot(self, wid: bytes) -> WorkerState:
        """One free slot of a ready worker, which then goes to the back of the LRU order."""
        worker = self.workers[wid]
        worker.free -= 1
        if worker.free <= 0:
            self._unset_ready(wid)
        else:
            self._set_ready(worker)
        return worker

    def lendable(self) -> list[WorkerState]:
        """The workers with free slots to lend to the hot path (O(free workers))."""
        ready = sorted((used, wid) for kind in self._ready.values() for wid, used in kind.items())
        return [self.workers[wid] for _, wid in ready if not self.workers[wid].control]

    def lend_all(self, worker: WorkerState) -> int:
        """Every free slot of ``worker``, lent out: it comes back through ``add_slots``."""
        slots, worker.free = worker.free, 0
        self._unset_ready(worker.wid)
        return slots

    def add_slots(self, worker: WorkerState, slots: int) -> None:
        self._add_slots(worker, slots)

    def _add_slots(self, worker: WorkerState, slots: int) -> None:
        if slots <= 0 or worker.draining:
            return
        slots = min(slots, MAX_SLOTS_PER_WORKER - worker.free)
        if slots <= 0:
            return  # past the bound: a worker claiming more slots than any needs
        worker.free += slots
        self._set_ready(worker)

    def _claim(self, worker: WorkerState, slots: int) -> int:
        """The slots a READY may add: within ``max_slots_per_host`` for its host and
        ``MAX_SLOTS_PER_WORKER`` for it, counting what its READYs announced before (free,
        lent to the hot path or running: slots come back after each task, so that is its share)."""
        slots = max(0, min(slots, MAX_SLOTS_PER_WORKER - worker.slots,
                           self.max_slots_per_host - self._host_slots[worker.host]))
        worker.slots += slots
        self._host_slots[worker.host] += slots
        return slots
