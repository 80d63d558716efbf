"""The worker supervisor: a host's control plane, off the data path.

It starts the pool processes; each connects to the broker itself and is a worker of its
own there (see ``pool``), so a task crosses no relay on this host. The supervisor keeps
one DEALER of its own to the broker, the host's control connection (READY ``control``,
heartbeats both ways, reconnect with back-off). While it is alive, the broker treats its
processes as alive even when one is too busy with a long task to heartbeat.

Through that connection it speaks for its processes: the moment one dies it says so,
naming the task it was running (its ``StatusBoard`` says which), so the broker requeues
that process's tasks at once; it answers ``deadline_exceeded`` for a task running past
its deadline or the task timeout and kills the process; it kills a process whose task
the broker cancelled; and it starts a replacement for every process that ends.
The decisions live in the socket-free ``table.ProcessTable``.

Its metrics count each task once, where it ended: a pool process counts the tasks it ends
itself (done, failed, result_too_large, deadline_exceeded, cancelled before it started)
and their seconds on its status board, read here as running totals; the supervisor counts the
tasks that end because it killed their process, or because the process died on them
(timed_out, deadline_exceeded or cancelled past the grace, worker_crashed).
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid

import zmq

from .. import protocol as P
from .. import tracing
from ..errors import DeadlineExceeded, ProtocolError, TaskCancelled, WorkerCrashed
from ..metrics import WorkerMetrics
from ..sockutil import drain
from ..wakeup import Wakeup
from .board import NOTHING, StatusBoard, Tally
from .config import WorkerConfig
from .hostload import HostLoad
from .link import BrokerLink
from .pool import learned_operations, pool_main
from .table import Answer, Kill, Proc, ProcessTable

log = logging.getLogger("engine.worker")

STARTUP_DEATHS_BEFORE_NO_MODELS = 2  # pool processes dead while loading models before they start without
STOP_KILL_AFTER_S = 3.0  # after the drain, how long a process may take to exit before it is killed


class Supervisor:
    def __init__(self, config: WorkerConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        self.ctx = context or zmq.Context.instance()
        self.host = socket.gethostname()
        self.name = f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"  # also its routing id
        self._mp = multiprocessing.get_context("spawn")
        self.table = ProcessTable(task_timeout_s=config.task_timeout_s)
        self.link = BrokerLink(self.ctx, config, self.name.encode(), name=f"worker {self.name}",
                               register=self._register, watch_handshakes=True, beat_fields=HostLoad().fields)
        self._generation = 0
        self._startup_deaths = 0  # pool processes that died before they were ready (loading models)
        self._wakeup = Wakeup()
        self._stopping = False
        self.stats = {"started": 0, "replaced": 0, "crashed": 0, "timed_out": 0, DeadlineExceeded.code: 0,
                      "killed": 0, "internal_errors": 0}
        self.metrics = WorkerMetrics()  # tasks counted from each process's status board; scraped off this thread
        self._counted: dict[str, Tally] = {}  # per process: the board's totals already in the metrics
        self._ending: dict[str, tuple[str, str]] = {}  # per process: (task, outcome) if it is killed on that task

    # ---- life cycle --------------------------------------------------------------
    def stop(self) -> None:
        """Drain and stop (thread- and signal-safe)."""
        self._stopping = True
        self._wakeup.fire()

    def run(self) -> None:
        for _ in range(self.config.processes):
            self._spawn()
        self.link.connect()
        log.info("worker %s: %d pool process(es), each a worker of its own at the broker %s with %d slot(s) "
                 "(1 running + %d waiting)", self.name, self.config.processes, self.config.connect,
                 self.config.slots_per_process, self.config.prefetch)
        drain_until_s = None
        try:
            while True:
                now_s = time.monotonic()
                if self._stopping and drain_until_s is None:
                    drain_until_s = now_s + self.config.drain_timeout_s
                    self.link.send(P.encode(P.Disconnect(reason="worker stopping", drain=True)))
                    log.info("stopping: draining %d pool process(es): each finishes the tasks it holds",
                             len(self.table.procs))
                    for proc in self.table.procs.values():
                        _signal(proc, signal.SIGTERM)
                if drain_until_s is not None and (not self.table.procs or now_s >= drain_until_s):
                    break
                wake_s = min(self.link.next_due_s(), self.table.next_wake_s(now_s))
                self._poll(max(0, int((wake_s - now_s) * 1000)) + 1)
                now_s = time.monotonic()
                self._act(self.table.watch(now_s, DeadlineExceeded.code))
                self.link.tick(now_s, self.name)
                self._publish()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        deadline_s = time.monotonic() + STOP_KILL_AFTER_S
        for proc in list(self.table.procs.values()):
            _signal(proc, signal.SIGTERM)
        for proc in list(self.table.procs.values()):
            proc.handle.join(max(0.0, deadline_s - time.monotonic()))
            if proc.handle.is_alive():
                log.warning("pool process %d did not stop in time; killing it (the broker requeues its tasks)",
                            proc.pid)
                proc.handle.kill()
                proc.handle.join()
                self._gone(proc, "was killed at shutdown")
        self.link.send(P.encode(P.Disconnect(reason="worker stopped")))
        self.link.close(linger_s=0.5)  # let the DISCONNECT go out
        self._wakeup.close()
        log.info("worker %s stopped: %d process(es) started, %d replaced (%d crashed, %d past the task timeout)",
                 self.name, self.stats["started"], self.stats["replaced"], self.stats["crashed"],
                 self.stats["timed_out"])

    def _publish(self) -> None:
        """Metrics from the status boards: tasks each process ended since the last look, who is busy, what is held."""
        busy = held = 0
        for proc in self.table.procs.values():
            run = proc.board.read()
            busy += bool(run.task_id)
            held += run.held
            self._count(proc)
        self.metrics.publish_state(len(self.table.procs), busy, held)

    def _count(self, proc: Proc) -> None:
        """Into the metrics: what the process's board totals gained since they were last counted."""
        tally = proc.board.tally()
        before = self._counted.get(proc.ident, NOTHING)
        if tally is None or tally == before:
            return  # mid-update (counted at the next look), or nothing new
        new = tally.minus(before)
        self.metrics.tasks_ended(new.outcomes, new.buckets, new.seconds)
        self._counted[proc.ident] = tally

    # ---- the broker -----------------------------------------------------------------
    def _register(self) -> None:
        self.link.send(P.encode(P.Ready(capacity=0, host=self.host, pid=os.getpid(), processes=self.config.processes,
                                        control=True)))

    def _on_broker(self, frames: list) -> None:
        try:
            msg, _ = P.decode(frames)
        except ProtocolError as exc:
            log.warning("dropped a bad message from the broker: %s", exc)
            return
        self.link.heard(msg)
        if isinstance(msg, P.Cancel):
            proc = self.table.cancel(msg.task_id, time.monotonic())
            if proc is not None:
                self._ending[proc.ident] = (msg.task_id, TaskCancelled.code)  # counted if it is killed on it
                log.info("task %s cancelled while running in process %d: killed unless it ends within %g s%s",
                         msg.task_id, proc.pid, self.table.grace_s, tracing.tag(proc.board.read().trace))
        elif isinstance(msg, P.Disconnect):
            log.info("broker asked this worker to register again (%s)", msg.reason)
            self._register()
        elif not isinstance(msg, P.Heartbeat):
            log.warning("broker sent %s, which a worker supervisor does not expect", P.TYPE_NAMES[msg.TYPE])

    # ---- pool processes ----------------------------------------------------------------
    def _spawn(self) -> None:
        self._generation += 1
        ident = f"{self.name}/p{self._generation}"
        board = StatusBoard(self._mp)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        handle = self._mp.Process(target=pool_main, name=f"engine-pool-{self._generation}", daemon=True,
                                  args=(self.config, ident.encode(), self.name, board, os.getpid(), level))
        handle.start()
        self.table.add(Proc(ident=ident, handle=handle, board=board))
        self.stats["started"] += 1

    def _act(self, actions: list[Answer | Kill]) -> None:
        for action in actions:
            if isinstance(action, Answer):
                self.stats[DeadlineExceeded.code] += 1
                timed_out = "task_timeout_s" in action.meta
                self._ending[action.proc.ident] = (action.task_id, "timed_out" if timed_out else DeadlineExceeded.code)
                meta = {**action.meta, "worker": f"{self.host}:{action.proc.pid}"}
                log.warning("task %s in process %d: %s%s", action.task_id, action.proc.pid, action.message,
                            tracing.tag(action.proc.board.read().trace))
                self.link.send(P.encode(P.Error(task_id=action.task_id, code=action.code, message=action.message,
                                                meta=meta, worker=action.proc.ident)))
            else:
                self.stats["killed"] += 1
                if "task timeout" in action.reason:
                    self.stats["timed_out"] += 1
                log.warning("pool process %d %s%s", action.proc.pid, action.reason,
                            tracing.tag(action.proc.board.read().trace))
                action.proc.handle.kill()

    def _on_death(self, proc: Proc) -> None:
        proc.handle.join(1.0)  # the sentinel fires as its fds close, a moment before it can be reaped
        if not proc.board.ready and not self._stopping:
            self._died_starting(proc)
        self._gone(proc, None)
        if not self._stopping:
            self.stats["replaced"] += 1
            self.metrics.process_restarted()
            self._spawn()

    def _died_starting(self, proc: Proc) -> None:
        """A process that dies before it is ready died loading its models (a LiteRT build that
        crashes on this machine): after ``STARTUP_DEATHS_BEFORE_NO_MODELS`` such deaths the
        replacements start without them, serving every other operation."""
        self._startup_deaths += 1
        if self.config.learned and self._startup_deaths >= STARTUP_DEATHS_BEFORE_NO_MODELS:
            self.config = dataclasses.replace(self.config, learned=False)
            log.error("%d pool processes died while loading the learned models (the last with exit code %s); "
                      "the replacements start without them: this host does not offer %s. Check the LiteRT "
                      "install for this machine, or start the worker with --no-learned to skip this.",
                      self._startup_deaths, proc.handle.exitcode, ", ".join(learned_operations()))

    def _gone(self, proc: Proc, how: str | None) -> None:
        """Tell the broker at once: it requeues the process's tasks, blaming only the one it ran."""
        if self.table.remove(proc.ident) is None:
            return
        self._count_death(proc)
        default_how, task_id = self.table.death(proc, proc.handle.exitcode)
        how = how or default_how
        if self._stopping and proc.handle.exitcode == 0:
            return  # drained and said goodbye itself
        if task_id:
            self.stats["crashed"] += 1
            log.warning("pool process %d %s while running task %s; replacing it%s", proc.pid, how, task_id,
                        tracing.tag(proc.board.read().trace))
        elif not proc.kill_reason:
            log.warning("pool process %d %s; replacing it", proc.pid, how)
        self.link.send(P.encode(P.Disconnect(reason=f"the worker process {how}", worker=proc.ident,
                                             task_id=task_id or None)))

    def _count_death(self, proc: Proc) -> None:
        """A process ended: the last of what it counted, and the task it was on, which ended with it
        (as the supervisor decided when it answered for it, or cancelled it; else worker_crashed)."""
        self._count(proc)
        self._counted.pop(proc.ident, None)
        task_id, outcome = self._ending.pop(proc.ident, ("", ""))
        run = proc.board.read()
        if run.task_id:
            self.metrics.task_finished(outcome if run.task_id == task_id else WorkerCrashed.code,
                                       max(0.0, time.monotonic() - run.started_s))

    # ---- polling -------------------------------------------------------------------
    def _poll(self, timeout_ms: int) -> None:
        poller = zmq.Poller()
        poller.register(self.link.sock, zmq.POLLIN)
        poller.register(self.link.monitor, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        sentinels = {proc.handle.sentinel: proc for proc in self.table.procs.values()}
        for fd in sentinels:
            poller.register(fd, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        if self._wakeup.fd in events:
            self._wakeup.drain()
        sock, monitor = self.link.sock, self.link.monitor
        if sock is not None and sock in events:
            drain(sock, self._on_broker, self.stats, log, name="broker")
        if monitor is not None and monitor in events:
            drain(monitor, self.link.on_handshake, self.stats, log, name="monitor")
        for fd, proc in sentinels.items():
            if fd in events:
                self._on_death(proc)


def _signal(proc: Proc, sig: int) -> None:
    try:
        os.kill(proc.pid, sig)
    except (ProcessLookupError, TypeError):
        pass
