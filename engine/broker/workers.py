"""The broker's worker-facing half: the back socket, READY, results, retries, leases, dispatch.

An object of its own, owned by the broker's thread. It reaches the broker only through
``broker.finish_ok`` / ``broker.finish_error`` (replies go to the task's origin) and
the shared ``dispatcher``, ``stats`` and ``config``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import zmq

from .. import deadlines
from .. import protocol as P
from ..errors import DeadlineExceeded, ProtocolError, TaskFailed, Unauthorized, error_class
from ..security import WORKERS
from ..sockutil import NOBLOCK, send_frames
from . import sockets
from .config import LEASE_GRACE_S, WORKER_PIPE_MESSAGES

DISCONNECT_PROBES_S = (0.05, 0.3)  # after a closed connection, when to look for unreachable workers
from .state import Task

if TYPE_CHECKING:
    from .core import Broker

log = logging.getLogger("engine.broker")


class WorkerSide:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.config = broker.config
        self.dispatcher = broker.dispatcher
        self.stats = broker.stats
        self.sock = sockets.bind(broker.ctx, zmq.ROUTER, self.config.back, self.config, name="back",
                                 curve=broker.curve, role=WORKERS, handover=True,
                                 sndhwm=WORKER_PIPE_MESSAGES)
        self._welcome = P.encode(P.Heartbeat(sender=broker.instance_id,
                                             max_message_bytes=self.config.max_message_bytes))
        # libzmq reports each closed connection (with its fd, not its routing id): a closed
        # connection makes the broker check, a moment later, which workers it can no longer reach.
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._probes_s: list[float] = []

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)

    def handle(self, events: dict, now_s: float) -> None:
        if self.monitor in events:
            sockets.drain(self.monitor, self._on_disconnect, self.stats, name="back monitor")
        if self.sock in events:
            sockets.drain(self.sock, self._on_message, self.stats, name="back")
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
        self._probes_s = sorted({*self._probes_s, *(now_s + d for d in DISCONNECT_PROBES_S)})

    def _probe(self) -> None:
        """Drop every worker the back socket can no longer reach (its tasks requeued at once)."""
        beat = P.encode(P.Heartbeat(sender=self.broker.instance_id))
        for wid in list(self.dispatcher.workers):
            try:
                send_frames(self.sock, [wid, *beat], NOBLOCK)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    self.remove(wid, "closed its connection")

    def send(self, wid: bytes, frames: list) -> None:
        try:
            send_frames(self.sock, [wid, *frames], NOBLOCK)
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or not reading (EAGAIN): heartbeats and leases decide
            log.debug("a message to worker %s was not sent: %s", wid.hex(), exc)

    def task_id(self, jid: int) -> str:
        return f"{jid}@{self.broker.instance_id}"

    def cancel(self, task: Task) -> None:
        if task.worker is not None:
            self.send(task.worker, P.encode(P.Cancel(task_id=self.task_id(task.jid))))

    # ---- incoming ----------------------------------------------------------------
    def _on_message(self, frames: list) -> None:
        wid = frames[0].bytes
        curve = self.broker.curve
        if curve is not None and curve.identity(frames[0], WORKERS) is None:
            self.stats[Unauthorized.code] += 1
            if wid in self.dispatcher.workers:
                self.remove(wid, "lost its key (revoked from the allow-list)")
            return
        try:
            msg, payloads = P.decode(frames[1:])
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            log.warning("dropped a bad message from worker %s: %s", wid.hex(), exc)
            return
        now_s = time.monotonic()
        d = self.dispatcher
        if isinstance(msg, P.Ready):
            if d.ready(wid, msg.capacity, now_s, host=msg.host or "", pid=msg.pid or 0, ops=msg.ops,
                       processes=msg.processes):
                self.send(wid, self._welcome)  # before any task: the limits the worker must respect
                log.info("worker %s joined from %s pid %s with %d slot(s)", wid.hex(), msg.host, msg.pid,
                         msg.capacity)
            return
        known = d.seen(wid, now_s)
        if isinstance(msg, (P.Reply, P.Error)):
            self._on_result(wid, msg, payloads)
        elif isinstance(msg, P.Disconnect):
            if msg.drain and known:
                d.drain(wid)
                log.info("worker %s is draining (%s)", wid.hex(), msg.reason or "no reason given")
            else:
                self.remove(wid, f"disconnected ({msg.reason or 'no reason given'})")
            return
        elif not isinstance(msg, P.Heartbeat):
            log.warning("worker %s sent %s, which workers may not send", wid.hex(), P.TYPE_NAMES[msg.TYPE])
        if not known:
            self.send(wid, P.encode(P.Disconnect(reason="unknown worker: send READY")))

    def _on_result(self, wid: bytes, msg: P.Reply | P.Error, payloads: list) -> None:
        jid_text, _, instance = (msg.task_id or "").partition("@")
        if instance != self.broker.instance_id or not jid_text.isdigit():
            log.debug("worker %s answered task %r of another broker instance: dropped", wid.hex(), msg.task_id)
            return
        jid = int(jid_text)
        d = self.dispatcher
        released = d.release(wid, jid)
        task = d.tasks.get(jid)
        if task is None or wid not in task.holders:
            return  # finished already (a duplicate after requeue, or cancelled), or never this worker's
        if released is None:
            if isinstance(msg, P.Error):
                return  # it was taken from this worker (dead, lease expired) and runs again elsewhere
            self.stats["late_replies"] += 1  # a late success is still a success
        if isinstance(msg, P.Error) and error_class(msg.code).retryable:
            task.attempts += 1
            if task.attempts > self.config.max_retries:
                self._fail(task, msg.message)
            else:
                self.stats["requeued"] += 1
                log.info("task %s requeued after worker %s failed on it (attempt %d): %s", jid,
                         wid.hex(), task.attempts, msg.message)
                d.requeue(task)
            return
        d.finish(jid)
        self.cancel(task)  # another worker runs it after a requeue: its answer will be dropped
        if isinstance(msg, P.Reply):
            self.broker.finish_ok(task, msg.meta, payloads[0])
        else:
            self.broker.finish_error(task, msg.code, msg.message, msg.meta)

    def _fail(self, task: Task, last_error: str) -> None:
        self.dispatcher.finish(task.jid)
        text = (f"the task failed {task.attempts} time(s) on workers and was given up "
                f"(max_retries={self.config.max_retries}); last error: {last_error}")
        log.warning("task %s (%s): %s", task.jid, task.task_id, text)
        self.broker.finish_error(task, TaskFailed.code, text)

    # ---- workers and leases ------------------------------------------------------------
    def remove(self, wid: bytes, why: str) -> None:
        orphans = self.dispatcher.remove_worker(wid)
        log.info("worker %s %s; %d task(s) requeued", wid.hex(), why, len(orphans))
        for task in orphans:
            if task.attempts > self.config.max_retries:
                self.dispatcher.queue.remove(task)
                self._fail(task, f"worker {why}")
            else:
                self.stats["requeued"] += 1

    def beat(self, now_s: float) -> None:
        """Heartbeats out; silent workers and expired leases dealt with."""
        for wid in self.dispatcher.expired(now_s):
            self.send(wid, P.encode(P.Disconnect(reason="no heartbeat: declared dead")))
            self.remove(wid, "missed heartbeats: declared dead")
        self.expire_leases(now_s)
        beat = P.encode(P.Heartbeat(sender=self.broker.instance_id))
        for wid in list(self.dispatcher.workers):
            self.send(wid, beat)

    def expire_leases(self, now_s: float) -> None:
        d = self.dispatcher
        for task in d.expired_leases(now_s):
            wid = task.worker
            if wid is None or task.jid not in d.tasks:
                continue  # requeued already: its worker was dropped for an earlier expiry in this list
            self.cancel(task)
            worker = d.take_back(task)
            self.stats["leases_expired"] += 1
            if task.due_s is not None and now_s >= task.due_s:
                d.queue.remove(task)
                d.finish(task.jid)
                log.warning("task %s (%s): worker %s did not answer by its deadline; failed", task.jid,
                            task.task_id, wid.hex())
                self.broker.finish_error(task, DeadlineExceeded.code,
                                         f"the task's deadline passed and its worker did not answer within "
                                         f"{LEASE_GRACE_S:g} s more; it was abandoned")
            elif task.attempts > self.config.max_retries:
                d.queue.remove(task)
                self._fail(task, f"worker {wid.hex()} did not answer within its lease")
            else:
                self.stats["requeued"] += 1
                log.warning("task %s (%s): worker %s did not answer within its lease (--task-lease-s %g, or "
                            "the deadline + %g s); requeued (attempt %d)", task.jid, task.task_id, wid.hex(),
                            self.config.task_lease_s, LEASE_GRACE_S, task.attempts)
            if worker is not None and worker.lease_expiries >= self.config.max_lease_expiries:
                self.send(worker.wid, P.encode(P.Disconnect(reason="let too many task leases expire")))
                self.remove(worker.wid, f"let {worker.lease_expiries} task leases expire in a row: dropped")

    def dispatch(self) -> None:
        now_s = time.monotonic()
        for task, worker in self.dispatcher.assignments(now_s, self.config.task_lease_s, LEASE_GRACE_S):
            req = task.request
            options = deadlines.forwarded(req.options, task.received_s, now_s)
            self.send(worker.wid, P.request_frames(self.task_id(task.jid), req.pipeline, options, task.payload))
