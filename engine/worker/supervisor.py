"""The worker supervisor: one DEALER to the broker, a pool of processes behind a ROUTER.

One thread owns both sockets. It announces ``processes * (1 + prefetch)`` slots to the
broker (a task waits at hand for each busy process, so none idles through a round trip), hands
each task to an idle pool process (over ipc, payload frames passed by reference),
forwards answers, and watches the processes: one that dies or runs past the task
timeout is reported (``worker_crashed``, so the broker retries the task elsewhere) and
replaced. Heartbeats both ways; a silent broker means reconnect with back-off.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import zmq

from .. import deadlines, handshake, sockutil
from .. import protocol as P
from ..errors import (DeadlineExceeded, ProtocolError, ResultTooLarge, TaskCancelled, TaskError,
                      WorkerCrashed)
from ..wakeup import Wakeup
from .config import WorkerConfig
from .pool import pool_main

log = logging.getLogger("engine.worker")


@dataclass(eq=False)
class Held:
    """A task this worker holds: waiting for a process, or running in one."""

    task_id: str
    frames: list  # header and payload, forwarded untouched
    epoch: int  # registration it arrived under: answers of older ones free no broker slot
    started_s: float | None = None
    due_s: float | None = None  # its deadline (monotonic), if the request set one
    abandoned_s: float | None = None  # when it was answered (deadline passed, cancelled) while still running
    abandoned_why: str = ""


@dataclass(eq=False)
class PoolProcess:
    ident: bytes
    proc: Any  # multiprocessing.Process
    ready: bool = False
    task: Held | None = None
    kill_reason: str | None = None
    timed_out: bool = False  # killed for running past the task timeout


class Supervisor:
    def __init__(self, config: WorkerConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        self.ctx = context or zmq.Context.instance()
        self.host = socket.gethostname()
        self.wid = f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}".encode()
        self._mp = multiprocessing.get_context("spawn")
        self._ipc_dir = tempfile.mkdtemp(prefix="engine-worker-")
        self.pool_endpoint = f"ipc://{self._ipc_dir}/pool"
        self.pool_sock = self.ctx.socket(zmq.ROUTER)
        self.pool_sock.linger = 0
        self.pool_sock.bind(self.pool_endpoint)
        self.procs: dict[bytes, PoolProcess] = {}
        self.pending: deque[Held] = deque()
        self.epoch = 0
        self.broker: zmq.Socket | None = None
        self._mon: zmq.Socket | None = None  # the broker socket's handshake events
        self._handshakes = handshake.HandshakeWatch(role="worker", curve=config.curve is not None,
                                                    address=config.connect)
        self._refused: str | None = None  # logged once per distinct reason, until a handshake succeeds
        self._liveness_s = config.heartbeat_interval_s * config.heartbeat_liveness
        self._backoff_s = config.reconnect_min_s
        self._broker_expiry_s = 0.0
        self._generation = 0
        self._wakeup = Wakeup()
        self._stopping = False
        self.max_message_bytes: int | None = None  # the broker's limit, from its first heartbeat
        self.stats = {"done": 0, "failed": 0, "crashed": 0, "replaced": 0, DeadlineExceeded.code: 0,
                      TaskCancelled.code: 0, "timed_out": 0, ResultTooLarge.code: 0, "internal_errors": 0}

    # ---- life cycle --------------------------------------------------------------
    def stop(self) -> None:
        """Drain and stop (thread- and signal-safe)."""
        self._stopping = True
        self._wakeup.fire()

    def run(self) -> None:
        for _ in range(self.config.processes):
            self._spawn()
        self._connect()
        log.info("worker %s: %d process(es), broker %s", self.wid.decode(), self.config.processes,
                 self.config.connect)
        next_beat_s = time.monotonic() + self.config.heartbeat_interval_s
        drain_until_s = None
        try:
            while True:
                now_s = time.monotonic()
                if self._stopping and drain_until_s is None:
                    drain_until_s = now_s + self.config.drain_timeout_s
                    self._send_broker(P.encode(P.Disconnect(reason="worker stopping", drain=True)))
                    log.info("stopping: draining %d task(s)", self._held_count())
                if drain_until_s is not None and (not self._held_count() or now_s >= drain_until_s):
                    break
                deadline_s = min(next_beat_s, self._broker_expiry_s, self._next_task_deadline())
                self._poll(max(0, int((deadline_s - now_s) * 1000)) + 1)
                now_s = time.monotonic()
                self._kill_overdue(now_s)
                self._expire(now_s)
                if now_s >= self._broker_expiry_s:
                    log.warning("broker silent for %.1f s: reconnecting to %s", self._liveness_s, self.config.connect)
                    self._connect()
                if now_s >= next_beat_s:
                    self._send_broker(P.encode(P.Heartbeat(sender=self.wid.decode())))
                    next_beat_s = now_s + self.config.heartbeat_interval_s
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        left = self._held_count()
        if left:
            log.warning("stopping with %d task(s) unfinished: the broker will requeue them", left)
        self._send_broker(P.encode(P.Disconnect(reason="worker stopped")))
        for pp in self.procs.values():
            self.pool_sock.send_multipart([pp.ident, *P.encode(P.Disconnect(reason="stop"))])
        deadline_s = time.monotonic() + 3.0
        for pp in self.procs.values():
            pp.proc.join(max(0.0, deadline_s - time.monotonic()))
            if pp.proc.is_alive():
                pp.proc.kill()
                pp.proc.join()
        if self.broker is not None:
            handshake.stop(self.broker, self._mon)
            self.broker.close(linger=500)  # let the DISCONNECT go out
        self.pool_sock.close(linger=0)
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
        self._wakeup.close()
        log.info("worker stopped: %s", self.stats)

    # ---- broker connection ---------------------------------------------------------
    def _connect(self) -> None:
        """(Re)connect and register; each call backs off further until the broker answers."""
        if self.broker is not None:
            handshake.stop(self.broker, self._mon)
            self.broker.close(linger=0)
        self.broker = self.ctx.socket(zmq.DEALER)
        self.broker.linger = 0
        self.broker.routing_id = self.wid
        if self.config.curve is not None:
            self.config.curve.apply(self.broker)
        self._mon = handshake.monitor(self.broker)
        self.broker.connect(self.config.connect)
        self._register()
        self._broker_expiry_s = time.monotonic() + self._liveness_s + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.config.reconnect_max_s)

    def _on_handshake(self, frames: list) -> None:
        """A refused key would otherwise look like a broker that is down: say why, once."""
        verdict = self._handshakes.feed(frames)
        if verdict == handshake.OK:
            if self._refused:
                log.info("the broker at %s accepted this worker's key", self.config.connect)
            self._refused = None
        elif verdict is not None and verdict != self._refused:
            log.error("%s; retrying with back-off", verdict)
            self._refused = verdict

    def _register(self) -> None:
        from .. import ops

        self.epoch += 1
        free = 0 if self._stopping else max(0, self.config.slots - self._held_count())
        self._send_broker(P.encode(P.Ready(capacity=free, ops=ops.describe(), host=self.host, pid=os.getpid(),
                                           processes=self.config.processes)))

    def _send_broker(self, frames: list) -> None:
        if self.broker is None:
            return
        try:
            self.broker.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:  # no connection at all: the broker refused our CURVE handshake, or is not there
            log.debug("not connected to the broker: a message was dropped (the broker requeues lost tasks)")

    def _on_broker(self, frames: list) -> None:
        self._broker_expiry_s = time.monotonic() + self._liveness_s
        self._backoff_s = self.config.reconnect_min_s
        try:
            msg, _ = P.decode(frames)
        except ProtocolError as exc:
            log.warning("dropped a bad message from the broker: %s", exc)
            return
        if isinstance(msg, P.Heartbeat) and msg.max_message_bytes is not None and msg.max_message_bytes > 0:
            self.max_message_bytes = msg.max_message_bytes
        if isinstance(msg, P.Request):
            held = Held(task_id=msg.task_id, frames=frames, epoch=self.epoch)
            try:
                held.due_s = deadlines.due_s(msg.options, time.monotonic())
            except TaskError as exc:
                self._answered(held, P.error_frames(msg.task_id, exc.code, exc.message))
                return
            self.pending.append(held)
        elif isinstance(msg, P.Disconnect):
            log.info("broker asked this worker to register again (%s)", msg.reason)
            self._register()
        elif isinstance(msg, P.Cancel):
            self._cancel(msg.task_id)
        elif not isinstance(msg, P.Heartbeat):
            log.warning("broker sent %s, which a worker does not expect", P.TYPE_NAMES[msg.TYPE])

    def _cancel(self, task_id: str) -> None:
        """Drop a waiting task; abandon a running one, whose process gets ``deadlines.GRACE_S``
        to come back (a task about to finish keeps its warm process) before it is killed."""
        for held in self.pending:
            if held.task_id == task_id:
                self.pending.remove(held)
                log.info("task %s cancelled before it started", task_id)
                self._abandon(held, TaskCancelled.code, "cancelled before it started", "its task was cancelled")
                return
        for pp in self.procs.values():
            held = pp.task
            if held is not None and held.task_id == task_id and held.abandoned_s is None:
                log.info("task %s cancelled while running in process %d: killed unless it ends within %g s",
                         task_id, pp.proc.pid, deadlines.GRACE_S)
                self._abandon(held, TaskCancelled.code, "cancelled while running", "its task was cancelled")
                return

    def _answered(self, held: Held, frames: list) -> None:
        self._send_broker(frames)
        if held.epoch != self.epoch and not self._stopping:
            self._send_broker(P.encode(P.Ready(capacity=1)))  # the current registration never counted it

    # ---- pool ----------------------------------------------------------------------
    def _spawn(self) -> None:
        self._generation += 1
        ident = f"p{self._generation}".encode()
        proc = self._mp.Process(target=pool_main, name=f"engine-pool-{self._generation}", daemon=True,
                                args=(self.pool_endpoint, ident, self.config.limits, os.getpid()))
        proc.start()
        self.procs[ident] = PoolProcess(ident=ident, proc=proc)

    def _on_pool(self, frames: list) -> None:
        ident = frames[0].bytes
        pp = self.procs.get(ident)
        if pp is None:
            return  # a replaced process's last words
        try:
            msg, _ = P.decode(frames[1:])
        except ProtocolError as exc:
            log.error("pool process %s sent a bad message: %s", ident.decode(), exc)
            return
        if isinstance(msg, P.Ready):
            pp.ready = True
        elif isinstance(msg, (P.Reply, P.Error)) and pp.task is not None:
            held, pp.task = pp.task, None
            if held.abandoned_s is not None:
                return  # answered already (deadline_exceeded, cancelled)
            self.stats["done" if isinstance(msg, P.Reply) else "failed"] += 1
            self._answered(held, self._deliverable(held, frames[1:]))

    def _deliverable(self, held: Held, frames: list) -> list:
        """The answer, or ERROR result_too_large if the broker would refuse it (and drop this
        worker's connection with it): the client learns why, and the slot comes back."""
        limit = self.max_message_bytes
        size = sum(len(f) for f in frames)
        if limit is None or size <= limit:
            return frames
        self.stats[ResultTooLarge.code] += 1
        log.warning("task %s: the result is %d bytes, over the broker's message limit of %d: answered %s",
                    held.task_id, size, limit, ResultTooLarge.code)
        return P.error_frames(held.task_id, ResultTooLarge.code,
                              f"the result is {size / 2**20:.1f} MiB, more than the broker accepts "
                              f"({limit / 2**20:.0f} MiB, broker flag --max-message-mb): ask for a smaller "
                              "output (resize, a lower JPEG quality) or raise the limit",
                              {"result_bytes": size, "max_message_bytes": limit})

    def _on_death(self, pp: PoolProcess) -> None:
        pp.proc.join(1.0)  # the sentinel fires as its fds close, a moment before it can be reaped
        del self.procs[pp.ident]
        code = pp.proc.exitcode
        how = pp.kill_reason or (f"was killed by signal {-code}" if code and code < 0 else f"exited with code {code}")
        if pp.task is not None and pp.task.abandoned_s is None and pp.timed_out:
            self.stats["timed_out"] += 1  # not retried: it would only hold another process as long
            log.warning("pool process %d %s while running task %s; replacing it", pp.proc.pid, how, pp.task.task_id)
            self._answered(pp.task, P.error_frames(
                pp.task.task_id, DeadlineExceeded.code,
                f"the task ran longer than the worker's task timeout of {self.config.task_timeout_s:g} s and was "
                "stopped (not retried); give it less work, or run workers with a longer --task-timeout-s",
                {"worker": f"{self.host}:{pp.proc.pid}", "task_timeout_s": self.config.task_timeout_s}))
        elif pp.task is not None and pp.task.abandoned_s is None:
            self.stats["crashed"] += 1
            log.warning("pool process %d %s while running task %s; replacing it", pp.proc.pid, how, pp.task.task_id)
            self._answered(pp.task, P.error_frames(pp.task.task_id, WorkerCrashed.code,
                                                   f"the worker process {how} while running this task",
                                                   {"worker": f"{self.host}:{pp.proc.pid}"}))
        else:
            log.warning("idle pool process %d %s; replacing it", pp.proc.pid, how)
        self.stats["replaced"] += 1
        self._spawn()

    def _assign(self) -> None:
        for pp in self.procs.values():
            if not self.pending:
                return
            if pp.ready and pp.task is None:
                held = self.pending.popleft()
                held.started_s = time.monotonic()
                pp.task = held
                self.pool_sock.send_multipart([pp.ident, *held.frames], copy=False)

    def _kill_overdue(self, now_s: float) -> None:
        for pp in self.procs.values():
            held = pp.task
            if held and held.started_s and pp.kill_reason is None and now_s - held.started_s > self.config.task_timeout_s:
                pp.kill_reason = f"ran past the task timeout of {self.config.task_timeout_s:g} s and was killed"
                pp.timed_out = True
                pp.proc.kill()

    def _expire(self, now_s: float) -> None:
        """Answer deadline_exceeded for every task past its deadline (waiting or running); a
        process still busy ``deadlines.GRACE_S`` after that is killed and replaced."""
        for held in [h for h in self.pending if h.due_s is not None and now_s >= h.due_s]:
            self.pending.remove(held)
            self._deadline_passed(held, "before it started")
        for pp in self.procs.values():
            held = pp.task
            if held is None or pp.kill_reason is not None:
                continue
            if held.abandoned_s is None and held.due_s is not None and now_s >= held.due_s:
                self._deadline_passed(held, f"while running in process {pp.proc.pid}")
            elif held.abandoned_s is not None and now_s - held.abandoned_s >= deadlines.GRACE_S:
                pp.kill_reason = f"was still busy {deadlines.GRACE_S:g} s after {held.abandoned_why} and was killed"
                pp.proc.kill()

    def _deadline_passed(self, held: Held, when: str) -> None:
        self._abandon(held, DeadlineExceeded.code, f"the task's deadline passed {when}; it was abandoned "
                      "(not retried: give it a longer deadline_ms)", "its task's deadline")

    def _abandon(self, held: Held, code: str, message: str, why: str) -> None:
        """Answer ``code`` now (counted in ``stats[code]``); a process still running the task
        is killed ``deadlines.GRACE_S`` later, its log line saying ``why``."""
        held.abandoned_s = time.monotonic()
        held.abandoned_why = why
        self.stats[code] += 1
        self._answered(held, P.error_frames(held.task_id, code, message))

    def _next_task_deadline(self) -> float:
        starts = [pp.task.started_s for pp in self.procs.values() if pp.task and pp.task.started_s]
        due = [h.due_s for h in self.pending if h.due_s is not None]
        for pp in self.procs.values():
            if pp.task and pp.task.abandoned_s is not None:
                due.append(pp.task.abandoned_s + deadlines.GRACE_S)
            elif pp.task and pp.task.due_s is not None:
                due.append(pp.task.due_s)
        timeouts = [min(starts) + self.config.task_timeout_s] if starts else []
        return min(timeouts + due, default=float("inf"))

    def _held_count(self) -> int:
        return len(self.pending) + sum(1 for pp in self.procs.values() if pp.task is not None)

    # ---- polling -------------------------------------------------------------------
    def _poll(self, timeout_ms: int) -> None:
        poller = zmq.Poller()
        poller.register(self.broker, zmq.POLLIN)
        poller.register(self.pool_sock, zmq.POLLIN)
        poller.register(self._mon, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        sentinels = {pp.proc.sentinel: pp for pp in self.procs.values()}
        for fd in sentinels:
            poller.register(fd, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        if self._wakeup.fd in events:
            self._wakeup.drain()
        for sock, handler, name in ((self.broker, self._on_broker, "broker"), (self.pool_sock, self._on_pool, "pool"),
                                    (self._mon, self._on_handshake, "monitor")):
            if sock in events:
                sockutil.drain(sock, handler, self.stats, log, name=name)
        for fd, pp in sentinels.items():
            if fd in events:
                self._on_death(pp)
        self._assign()
