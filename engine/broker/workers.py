"""The broker's worker-facing half: the back socket, READY, results, retries, leases, dispatch.

An object of its own, owned by the broker's thread. What it uses of the broker, all of it:
``finish_ok`` / ``finish_error`` (replies go to the task's origin), ``unoffered`` (the text
of an unknown_operation), ``metrics``, ``curve`` (a worker's key), ``instance_id`` (task ids
and heartbeats), ``lane`` (the hot path: it takes back what a leaving worker ran there),
and the shared ``dispatcher``, ``stats`` and ``config``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import zmq

from .. import deadlines, sockutil, tracing
from .. import protocol as P
from ..errors import (
    DeadlineExceeded,
    ImageError,
    ProtocolError,
    TaskFailed,
    Unauthorized,
    UnknownOperation,
    is_retryable,
)
from ..logbound import LogBound
from ..security import WORKERS
from ..sockutil import NOBLOCK, send_frames
from .config import DRAIN_BATCH, LEASE_GRACE_S, WORKER_PIPE_MESSAGES
from .state import BLAME_ALL, Task, WorkerState, peer_name

DISCONNECT_PROBES_S = (0.05, 0.3, 1.0)  # after a closed connection, when to look for unreachable workers
PROBE_GRID_S = 0.05  # probes fall on this grid: closed connections (refused keys too) cost at most 20 probes/s
SUPERVISOR_REPORT_S = 1.0  # a pool process of a live host: how long its supervisor has to say why it is gone

if TYPE_CHECKING:
    from .core import Broker

log = logging.getLogger("engine.broker")
REFUSED_WORKERS = LogBound(log, "refused worker registrations", by="worker")  # a few lines a minute, then counts
BAD_WORKER_MESSAGES = LogBound(log, "bad messages from workers", by="worker")  # a few lines a minute, then counts


class WorkerSide:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.config = broker.config
        self.dispatcher = broker.dispatcher
        self.stats = broker.stats
        self.sock = sockutil.bind(broker.ctx, zmq.ROUTER, self.config.back, name="back", curve=broker.curve,
                                  role=WORKERS, handover=True, max_message_bytes=self.config.max_message_bytes,
                                  sndhwm=WORKER_PIPE_MESSAGES)
        self._limit = self.config.max_message_bytes
        # libzmq reports each closed connection (with its fd, not its routing id): a closed
        # connection makes the broker check, a moment later, which workers it can no longer reach.
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._probes_s: list[float] = []
        self._closed_s = 0.0  # when the last worker connection closed

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)

    def handle(self, events: dict, now_s: float) -> None:
        if self.monitor in events:
            sockutil.drain(self.monitor, self._on_disconnect, self.stats, log, name="back monitor",
                           batch=DRAIN_BATCH)
        if self.sock in events:
            lane = self.broker.lane
            if lane is not None:
                sockutil.drain_pump(lane.pump_back, self._on_message, self.stats, log, name="back",
                                    batch=DRAIN_BATCH)
            else:
                sockutil.drain(self.sock, self._on_message, self.stats, log, name="back", batch=DRAIN_BATCH)
        if self._probes_s and now_s >= self._probes_s[0]:
            self._probes_s = [t for t in self._probes_s if t > now_s]
            self._probe()

    def next_probe_s(self) -> float:
        return self._probes_s[0] if self._probes_s else float("inf")

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)

    def _on_disconnect(self, frames: list) -> None:
        """A worker connection closed. libzmq forgets its routing id a moment after the
        event: look then, and once more later."""
        now_s = time.monotonic()
        self._closed_s = now_s
        self._probes_s = sorted({*self._probes_s, *((now_s + d) // PROBE_GRID_S * PROBE_GRID_S + PROBE_GRID_S
                                                    for d in DISCONNECT_PROBES_S)})

    def _probe(self) -> None:
        """Drop every worker the back socket can no longer reach (its tasks requeued at once).
        A pool process whose host is alive gets ``SUPERVISOR_REPORT_S``: its supervisor
        names the task it was running, so that one alone counts an attempt."""
        beat = self.broker.heartbeat()
        now_s = time.monotonic()
        d = self.dispatcher
        for wid in list(d.workers):
            worker = d.workers.get(wid)
            if worker is None:
                continue  # removed with its host in this loop
            if d.group_alive(worker, now_s) and now_s - self._closed_s < SUPERVISOR_REPORT_S:
                continue
            try:
                send_frames(self.sock, [wid, *beat], NOBLOCK)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    self.remove(wid, "closed its connection")

    def send(self, wid: bytes, frames: list) -> None:
        try:
            send_frames(self.sock, [wid, *frames], NOBLOCK)
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or not reading (EAGAIN): heartbeats and leases decide
            log.debug("a message to worker %s was not sent: %s", peer_name(wid), exc)

    def task_id(self, jid: int) -> str:
        return f"{jid}@{self.broker.instance_id}"

    def cancel(self, task: Task, *, kill: bool = True) -> None:
        """Tell the workers holding ``task`` to drop it. A pool process busy with it cannot
        read that, so with ``kill`` its host's supervisor hears it too (it kills a process that
        does not stop); without, a running copy finishes and its answer is dropped."""
        frames = P.encode(P.Cancel(task_id=self.task_id(task.jid)))
        d = self.dispatcher
        for wid in d.holding(task) or ([task.worker] if task.worker is not None else []):
            self.send(wid, frames)
            worker = d.workers.get(wid)
            if kill and worker is not None and worker.group is not None and worker.group in d.workers:
                self.send(worker.group, frames)

    # ---- incoming ----------------------------------------------------------------
    def _on_message(self, frames: list) -> None:
        wid = frames[0].bytes
        curve = self.broker.curve
        if curve is not None and curve.identity(frames[0], WORKERS) is None:
            self.broker.metrics.refused(Unauthorized.code)
            if wid in self.dispatcher.workers:
                self.remove(wid, "lost its key (revoked from the allow-list)")
            return
        try:
            msg, payloads = P.decode(frames[1:])
        except ProtocolError as exc:
            self.broker.metrics.worker_bad_message()
            BAD_WORKER_MESSAGES.log(wid, "dropped a bad message from worker %s: %s", peer_name(wid), exc)
            return
        now_s = time.monotonic()
        d = self.dispatcher
        if isinstance(msg, P.Ready):
            self._on_ready(wid, msg, now_s)
            return
        known = d.seen(wid, now_s)
        control = known and d.workers[wid].control
        if isinstance(msg, (P.Reply, P.Error)):
            if control:
                self._for_pool_process(wid, msg)
            elif getattr(msg, "worker", None) is None:  # only a control speaks for another
                self._on_result(wid, msg, payloads)
        elif isinstance(msg, P.Disconnect):
            self._on_disconnect_msg(wid, msg, known, control)
            return
        elif isinstance(msg, P.Heartbeat):
            if msg.shm is not None and known:
                self._proved(d.workers[wid], msg.shm)
            if known and (msg.cpu_percent is not None or msg.mem_total_bytes is not None):
                d.workers[wid].report_load(msg.cpu_percent, msg.mem_used_bytes, msg.mem_total_bytes)
        else:
            BAD_WORKER_MESSAGES.log(wid, "worker %s sent %s, which workers may not send", peer_name(wid),
                                    P.TYPE_NAMES[msg.TYPE])
        if not known:
            self.send(wid, P.encode(P.Disconnect(reason="unknown worker: send READY")))

    def _on_ready(self, wid: bytes, msg: P.Ready, now_s: float) -> None:
        refusal = self.dispatcher.refusal(wid, msg.host or "", msg.ops)
        if refusal is not None:
            self.stats["workers_refused"] += 1
            self.send(wid, P.encode(P.Disconnect(reason=f"registration refused: {refusal}")))
            REFUSED_WORKERS.log(wid, "refused to register worker %s: %s", peer_name(wid)[:64], refusal)
            return
        control = bool(msg.control)
        group = msg.group.encode() if msg.group and not control else None
        known = self.dispatcher.workers.get(wid)
        if known is not None and not known.control and (msg.host is not None or msg.ops is not None):
            # A full registration from a worker we know (it reconnected, or answered our "send READY"
            # twice): it counts its slots afresh, so we do too; what it held is requeued without blame
            # (its answers are still taken: first answer wins), and it frees those slots with READY cap=1.
            self.remove(wid, "registered again", blame=None)
        if self.dispatcher.ready(wid, 0 if control else msg.capacity, now_s, host=msg.host or "",
                                 pid=msg.pid or 0, ops=msg.ops, processes=msg.processes, group=group,
                                 control=control):
            if msg.shm is not None and not control:
                self._proved(self.dispatcher.workers[wid], msg.shm)
            # Before any task: the limits the worker must respect, and the clock it ages deadlines by.
            self.send(wid, self.broker.heartbeat(max_message_bytes=self._limit, clock_s=time.time()))
            if control:
                log.info("worker %s joined from %s pid %s with %s pool process(es)", peer_name(wid), msg.host,
                         msg.pid, msg.processes)
            else:
                log.log(logging.DEBUG if group else logging.INFO, "worker %s joined from %s pid %s with %d slot(s)",
                        peer_name(wid), msg.host, msg.pid, msg.capacity)

    def _proved(self, worker: WorkerState, proof: str) -> None:
        """A worker's proof that it reads the broker's shared-memory key: tasks by reference go to it
        as they are (to the others, the broker reads the image and sends the bytes)."""
        shared = self.broker.proves(proof, worker.wid)
        if shared != worker.shm:
            self.dispatcher.set_shm(worker, shared)  # what is offered to clients, the hot path's kinds
            if self.broker.lane is not None:
                self.broker.lane.rekind(worker)
            log.debug("worker %s %s shared memory", peer_name(worker.wid), "reads" if shared else "does not read")

    def _on_disconnect_msg(self, wid: bytes, msg: P.Disconnect, known: bool, control: bool) -> None:
        d = self.dispatcher
        why = msg.reason or "no reason given"
        if control and msg.worker is not None:  # one of its pool processes is gone
            process = d.pool_process(wid, msg.worker)
            if process is not None:
                jid = self._jid(msg.task_id) if msg.task_id else None
                self.remove(process.wid, f"(pool process of {peer_name(wid)}): {why}", blame=jid)
        elif msg.drain and known:
            for process_wid in (d.pool_processes(wid) if control else [wid]):
                if self.broker.lane is not None:
                    self.broker.lane.retire(process_wid)  # its tasks there finish here, its slots stay here
                d.drain(process_wid)
            grouped = d.workers[wid].group is not None
            log.log(logging.DEBUG if grouped else logging.INFO, "worker %s is draining (%s)", peer_name(wid), why)
        else:
            self.remove(wid, f"disconnected ({why})", blame=None)

    def _for_pool_process(self, control: bytes, msg: P.Reply | P.Error) -> None:
        """A host's supervisor answers for one of its pool processes (deadline, task timeout)."""
        named = msg.worker if isinstance(msg, P.Error) else None  # only an ERROR may speak for a process
        process = self.dispatcher.pool_process(control, named) if named is not None else None
        if process is None:
            log.debug("worker %s answered for %r, not one of its processes: dropped", peer_name(control), named)
            return
        self._on_result(process.wid, msg, [])

    def _jid(self, task_id: str | None) -> int | None:
        jid_text, _, instance = (task_id or "").partition("@")
        return int(jid_text) if instance == self.broker.instance_id and jid_text.isdigit() else None

    def _on_result(self, wid: bytes, msg: P.Reply | P.Error, payloads: list) -> None:
        jid = self._jid(msg.task_id)
        if jid is None:
            log.debug("worker %s answered task %r of another broker instance: dropped", peer_name(wid), msg.task_id)
            return
        d = self.dispatcher
        released = d.release(wid, jid)
        task = d.tasks.get(jid)
        if task is None or wid not in task.holders:
            return  # finished already (a duplicate after requeue, or cancelled), or never this worker's
        if released is None:
            if isinstance(msg, P.Error):
                return  # it was taken from this worker (dead, lease expired) and runs again elsewhere
            self.stats["late_replies"] += 1  # a late success is still a success
        if isinstance(msg, P.Error) and is_retryable(msg.code):  # the one retry rule (errors.py): run it elsewhere
            if d.holding(task):
                return  # a straggler's copy still runs elsewhere: it answers
            task.attempts += 1
            if task.attempts > self.config.max_retries:
                self._fail(task, msg.message)
            else:
                self.broker.metrics.retried()
                log.info("task %s requeued after worker %s failed on it (attempt %d): %s%s", jid,
                         peer_name(wid), task.attempts, msg.message, tracing.tag(task.trace_id))
                d.requeue(task)
            return
        d.finish(jid)
        if not task.copied:
            d.took(wid, time.monotonic() - task.dispatched_s)
        # Another worker still runs it (a straggler's copy, or after a requeue): drop it if it has not
        # started; a running one finishes (its process stays warm) and its answer is dropped.
        if len(task.holders) > 1:
            self.cancel(task, kill=False)
        if isinstance(msg, P.Reply):
            self.broker.finish_ok(task, msg.meta, payloads[0])
        else:
            self.broker.finish_error(task, msg.code, msg.message, msg.meta)

    def _fail(self, task: Task, last_error: str) -> None:
        self.dispatcher.finish(task.jid)
        text = (f"the task failed {task.attempts} time(s) on workers and was given up "
                f"(max_retries={self.config.max_retries}); last error: {last_error}")
        log.warning("task %s (%s): %s%s", task.jid, task.task_id, text, tracing.tag(task.trace_id))
        self.broker.finish_error(task, TaskFailed.code, text)

    # ---- workers and leases ------------------------------------------------------------
    def remove(self, wid: bytes, why: str, blame: int | None = BLAME_ALL) -> None:
        """Drop a worker (a host's control connection: with all its pool processes); its
        tasks are requeued, those it is blamed for (see ``Dispatcher.remove_worker``) counting an attempt."""
        d = self.dispatcher
        worker = d.workers.get(wid)
        if worker is not None and worker.control:
            for process_wid in d.pool_processes(wid):
                self.remove(process_wid, f"(pool process of {peer_name(wid)}): its host {why}", blame)
        if self.broker.lane is not None:
            self.broker.lane.retire(wid)  # what it ran in the hot path is requeued below like the rest
        orphans = d.remove_worker(wid, blame)
        if worker is not None and (orphans or worker.group is None or blame is not None):
            log.info("worker %s %s; %d task(s) requeued", peer_name(wid), why, len(orphans))
        for task in orphans:
            if task.trace_id:
                log.info("task %s (%s) requeued: worker %s %s%s", task.jid, task.task_id, peer_name(wid), why,
                         tracing.tag(task.trace_id))
            if d.exhausted(task):  # never queued again: failed here
                self._fail(task, f"worker {why}")
            else:  # requeued: run again after a failure; reassigned: it had not started, or no fault of its own
                self.broker.metrics.requeued(blamed=blame in (BLAME_ALL, task.jid))

    def beat(self, now_s: float) -> None:
        """Heartbeats out; silent workers and expired leases dealt with."""
        for wid in self.dispatcher.expired(now_s):
            self.send(wid, P.encode(P.Disconnect(reason="no heartbeat: declared dead")))
            self.remove(wid, "missed heartbeats: declared dead")
        self.expire_leases(now_s)
        self.fail_unrunnable(now_s)
        beat = self.broker.heartbeat(clock_s=time.time())
        for wid in list(self.dispatcher.workers):
            self.send(wid, beat)

    def fail_unrunnable(self, now_s: float) -> None:
        """Queued tasks whose operations no connected worker has offered for a liveness
        interval (the workers that did left, and none came back) fail rather than wait for
        their client's timeout."""
        d = self.dispatcher
        late = [t for t in d.unrunnable() if now_s - t.received_s >= d.liveness_s]
        d.drop_queued(late)
        for task in late:
            self.broker.finish_error(task, UnknownOperation.code, self.broker.unoffered(task.needs or frozenset()))

    def expire_leases(self, now_s: float) -> None:
        d = self.dispatcher
        if self.broker.lane is not None:
            self.broker.lane.take_expired(now_s)
        for task in d.expired_leases(now_s):
            wid = task.worker
            if wid is None or task.jid not in d.tasks:
                continue  # requeued already: its worker was dropped for an earlier expiry in this list
            self.cancel(task)
            past_deadline = task.due_s is not None and now_s >= task.due_s
            worker = d.take_back(task, requeue=not past_deadline)  # requeued unless it ends here
            self.stats["leases_expired"] += 1
            if past_deadline:
                d.finish(task.jid)
                log.warning("task %s (%s): worker %s did not answer by its deadline; failed%s", task.jid,
                            task.task_id, peer_name(wid), tracing.tag(task.trace_id))
                self.broker.finish_error(task, DeadlineExceeded.code,
                                         f"the task's deadline passed and its worker did not answer within "
                                         f"{LEASE_GRACE_S:g} s more; it was abandoned")
            elif d.exhausted(task):
                self._fail(task, f"worker {peer_name(wid)} did not answer within its lease")
            else:
                self.broker.metrics.requeued()
                log.warning("task %s (%s): worker %s did not answer within its lease (--task-lease-s %g, or "
                            "the deadline + %g s); requeued (attempt %d)%s", task.jid, task.task_id, peer_name(wid),
                            self.config.task_lease_s, LEASE_GRACE_S, task.attempts, tracing.tag(task.trace_id))
            if worker is not None and worker.lease_expiries >= self.config.max_lease_expiries:
                self.send(worker.wid, P.encode(P.Disconnect(reason="let too many task leases expire")))
                self.remove(worker.wid, f"let {worker.lease_expiries} task leases expire in a row: dropped")

    def dispatch(self) -> None:
        now_s = time.monotonic()
        queue = self.dispatcher.queue
        for task, worker in self.dispatcher.assignments(now_s, self.config.task_lease_s, LEASE_GRACE_S):
            self._send_task(worker.wid, task, now_s, more=bool(queue))
        if self.broker.lane is not None:
            self.broker.lane.stragglers(now_s)
        for task, worker in self.dispatcher.stragglers(now_s):
            self.stats["straggler_copies"] += 1
            log.debug("task %s (%s) held %.2f s by %s: a copy goes to idle worker %s, first answer wins%s", task.jid,
                      task.task_id, now_s - task.dispatched_s, peer_name(task.worker or b"?"), peer_name(worker.wid),
                      tracing.tag(task.trace_id))
            self._send_task(worker.wid, task, now_s)

    def _send_task(self, wid: bytes, task: Task, now_s: float, *, more: bool = False) -> None:
        req = task.request
        options, sent_s = req.options, None
        # what is left of it, and when it was sent (a busy worker reads it later)
        if options and deadlines.KEY in options:
            options, sent_s = deadlines.forwarded(options, task.received_s, now_s), time.time()
        if req.ref and not self.dispatcher.workers[wid].shm and not self._inline(wid, task):
            return
        self.send(wid, P.request_frames(self.task_id(task.jid), req.pipeline, options, task.payload, sent_s, more,
                                        bool(req.ref)))

    def _inline(self, wid: bytes, task: Task) -> bool:
        """A task by reference for a worker that cannot read shared memory (another host): the
        broker reads the image and the task carries it from now on. False: the image is gone
        (its client cancelled or left); the task is failed."""
        try:
            task.payload = self.broker.read_ref(task.payload)
        except OSError as exc:
            self.dispatcher.release(wid, task.jid)
            self.dispatcher.finish(task.jid)
            self.broker.finish_error(task, ImageError.code, f"the image could not be read from shared memory "
                                                             f"({exc.strerror}): its client cancelled or left")
            return False
        task.request.ref = None
        return True
