"""One pool process: a worker of its own as the broker sees it.

It owns one DEALER to the broker (``BrokerLink``): READY with ``1 + prefetch`` slots and
its host's group id, heartbeats while idle, its tasks straight from the broker and its
answers straight back; no hop through the supervisor. It writes what it runs into its
``StatusBoard`` so the supervisor can enforce deadlines, cancels and the task timeout by
killing it. Any failure in a task becomes an ERROR reply; only a crash of the process
itself ends it, and the supervisor reports that and starts a replacement. How each task
ended (done, failed, result_too_large, ...) and the seconds it ran go onto its status board, where
the supervisor reads them for its metrics; the tasks that end by a kill it counts itself.

SIGTERM (from the supervisor) drains: no new tasks, those at hand finish, then DISCONNECT.
If the supervisor itself dies (its host is declared dead and its tasks requeued), the
process dies with it (Linux) or stops at its next look, and never registers again.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass

import zmq

from .. import deadlines, shm, tracing
from .. import protocol as P
from ..errors import (
    DeadlineExceeded,
    ImageError,
    ImageTooLarge,
    InternalError,
    ProtocolError,
    ResultTooLarge,
    TaskCancelled,
    TaskError,
)
from ..settings import setup_logging
from ..sockutil import drain
from ..wakeup import Wakeup
from .config import WorkerConfig
from .credit import Credit
from .link import BrokerLink

log = logging.getLogger("engine.worker.pool")

PARENT_CHECK_S = 1.0  # how often an idle process checks that its supervisor is alive
PR_SET_PDEATHSIG = 1  # linux/prctl.h
RECV_BATCH = 256


@dataclass(eq=False)
class Pending:
    """A task this process received and has not started yet (in ``PoolProcess.pending``)."""

    task_id: str
    request: P.Request
    payload: zmq.Frame  # the image, or the name of its shared-memory segment (``ref``)
    epoch: int  # registration it arrived under: answers of older ones free no broker slot
    due_s: float | None
    trace: str | None = None  # the client's trace id, for log lines
    ref: tuple[str, str | None] | None = None  # by reference: the input's segment, a spare file for the result


def pool_main(config: WorkerConfig, ident: bytes, group: str, board, supervisor_pid: int, log_level: str) -> None:
    """Entry point of a pool process (started with the 'spawn' method)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the supervisor's to handle
    setup_logging(log_level)
    _die_with_parent()
    if os.getppid() != supervisor_pid:
        return  # the supervisor died while this process was starting
    PoolProcess(config, ident, group, board, supervisor_pid).run()


def learned_operations() -> list[str]:
    """The operations that need the learned models (not offered where they cannot load)."""
    from .. import ops

    return sorted(name for name, op in ops.REGISTRY.items() if op.learned)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its supervisor dies. The broker requeues a dead
    host's tasks when its control connection drops; an orphan still running one would only
    come back as a stray worker of a host that no longer exists."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere the process notices at its next parent check
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError) as exc:
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hold what C libraries write to fd 2 meanwhile; pass on all but their INFO lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if line.strip() and not line.startswith("INFO: "):
                    log.warning("while loading models: %s", line)


class PoolProcess:
    def __init__(self, config: WorkerConfig, ident: bytes, group: str, board, supervisor_pid: int) -> None:
        import cv2

        cv2.setNumThreads(1)  # one process per core: OpenCV threads would only compete
        from .. import ops

        if config.test_ops:
            from ..ops import testing

            testing.register()
        self.ops = ops
        self.config = config
        self.ident = ident
        self.group = group
        self.board = board
        self.parent = supervisor_pid
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.limits = config.limits
        self.cache: dict = {}
        self.models_loaded = config.learned
        if config.learned:
            self._warm_up()
        self.offered = self._offered()
        board.mark_ready()
        self.pending: deque[Pending] = deque()
        self.credit = Credit(config.slots_per_process, config.max_credit)
        self.epoch = 0
        self.draining = False
        self._drain_sent = False
        self._ran = False  # a task ran since the socket was last read
        self.stats = {"done": 0, "failed": 0, TaskCancelled.code: 0, DeadlineExceeded.code: 0,
                      ResultTooLarge.code: 0}
        self._wakeup = Wakeup()
        self._shm_wanted = config.curve is None and shm.available()
        self._shm_key: str | None = None  # the broker's key we proved we read
        self._shm_proof: str | None = None  # ... and the proof, sent again with every READY
        signal.signal(signal.SIGTERM, lambda *_: self._drain())
        self.ctx = zmq.Context()
        self.link = BrokerLink(self.ctx, config, ident, name=f"pool process {os.getpid()}", register=self._register)

    def _warm_up(self) -> None:
        """Load what operations keep per process (learned models) before the first task."""
        warm = getattr(self.ops, "warm_up", None)
        if warm is None:
            return
        started_s = time.perf_counter()
        try:
            with _quiet_native_stderr():  # LiteRT prints an INFO line per model on fd 2
                loaded = warm(self.cache)
        except Exception as exc:  # a model this machine cannot load: its operations fail, the process serves the rest
            log.error("pool process %d could not load its models (%s: %s); it does not offer the operations "
                      "that need them (%s), the others run", os.getpid(), type(exc).__name__, exc,
                      ", ".join(learned_operations()))
            self.models_loaded = False
            return
        log.debug("pool process %d warmed up in %.0f ms: %s", os.getpid(), (time.perf_counter() - started_s) * 1000,
                  loaded)

    def _offered(self) -> dict:
        """The operations this process declares in READY: the broker routes it only tasks
        whose every step is among them (all but the learned ones if their models failed)."""
        described = self.ops.describe()
        if self.models_loaded:
            return described
        return {name: d for name, d in described.items() if not self.ops.REGISTRY[name].learned}

    def _drain(self) -> None:
        self.draining = True
        self._wakeup.fire()

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        link = self.link
        link.connect()
        poller = zmq.Poller()
        poller.register(self._wakeup.fd, zmq.POLLIN)
        sock: zmq.Socket | None = None
        try:
            while True:
                if link.sock is not None and link.sock is not sock:  # (re)connected: poll the new socket
                    if sock is not None:
                        poller.unregister(sock)
                    sock = link.sock
                    poller.register(sock, zmq.POLLIN)
                now_s = time.monotonic()
                fresh = not self.pending and not self._ran  # nothing ran since the last look: messages are new
                wait_s = 0.0 if self.pending else min(link.next_due_s() - now_s, PARENT_CHECK_S)
                events = dict(poller.poll(max(0, int(wait_s * 1000)) + (0 if self.pending else 1)))
                if self._wakeup.fd in events:
                    self._wakeup.drain()
                self._ran = False
                if sock is not None and sock in events:
                    self._receive(sock, fresh)
                if os.getppid() != self.parent:
                    log.warning("pool process %d: its supervisor is gone; stopping", os.getpid())
                    return
                now_s = time.monotonic()
                link.tick(now_s, self.group)
                if self.draining:
                    if not self._drain_sent:
                        self._drain_sent = True
                        link.send(P.encode(P.Disconnect(reason="worker stopping", drain=True)))
                    if not self.pending:
                        return
                if self.pending:
                    self._run_next()
        finally:
            left = len(self.pending)
            link.send(P.encode(P.Disconnect(reason="worker stopped" if not left else
                                            f"worker stopped with {left} task(s) unstarted")))
            link.close(linger_s=0.5)  # let the DISCONNECT go out
            self.ctx.term()
            self._wakeup.close()
            log.debug("pool process %d stopped: %s", os.getpid(), self.stats)

    def _receive(self, sock: zmq.Socket, fresh: bool) -> None:
        try:
            drain(sock, lambda frames: self._on_broker(frames, fresh), self.stats, log,
                  name=f"pool process {os.getpid()}", batch=RECV_BATCH)
        finally:
            self.board.hold(len(self.pending))  # tasks arrived or were cancelled (none runs while it reads)

    def _register(self) -> None:
        if os.getppid() != self.parent:  # its host is gone: the broker must not take it back
            self._drain()
            return
        self.epoch += 1
        self.credit.reset()
        free = 0 if self.draining else max(0, self.credit.current - len(self.pending))
        self.link.send(P.encode(P.Ready(capacity=free, ops=self.offered, host=socket.gethostname(),
                                        pid=os.getpid(), processes=1, group=self.group, shm=self._shm_proof)))

    def _on_broker(self, frames: list, fresh: bool = True) -> None:
        try:
            msg, payloads = P.decode(frames)
        except ProtocolError as exc:
            log.warning("pool process %d dropped a bad message from the broker: %s", os.getpid(), exc)
            return
        self.link.heard(msg, fresh=fresh)
        if isinstance(msg, P.Request):
            try:  # its deadline counts from when the broker sent it: it may have waited here behind a long task
                due_s = deadlines.due_s(msg.options, time.monotonic() - self.link.age_s(msg.sent_s))
            except TaskError as exc:
                self.link.send(P.error_frames(msg.task_id, exc.code, exc.message))
                return
            try:
                trace = tracing.trace_id(msg.options)
            except TaskError:
                trace = None  # the broker checks it; a label we cannot print is left out
            ref = shm.parse_ref(bytes(payloads[0].buffer).decode("ascii", "replace")) if msg.ref else None
            self.pending.append(Pending(msg.task_id, msg, payloads[0], self.epoch, due_s, trace, ref))
            more = self.credit.arrived(time.monotonic(), bool(msg.more))
            if more and not self.draining:
                log.debug("pool process %d waited on its link: credit %d (+%d)", os.getpid(), self.credit.current, more)
                self.link.send(P.encode(P.Ready(capacity=more)))
        elif isinstance(msg, P.Cancel):
            self._cancel(msg.task_id)
        elif isinstance(msg, P.Disconnect):
            log.info("broker asked pool process %d to register again (%s)", os.getpid(), msg.reason)
            self._register()
        elif isinstance(msg, P.Heartbeat):
            if msg.sender is not None and msg.shm != self._shm_key:
                self._shm_offered(msg.shm)
        else:
            log.warning("broker sent %s, which a worker does not expect", P.TYPE_NAMES[msg.TYPE])

    def _shm_offered(self, key_name: str | None) -> None:
        """The broker names its shared-memory key (or none): prove we read it, so that tasks of
        clients on this host come by reference."""
        proof = shm.prove(key_name, self.ident) if self._shm_wanted else None
        self._shm_key, self._shm_proof = key_name, proof
        if proof:
            self.link.send(P.encode(P.Heartbeat(shm=proof)))

    def _cancel(self, task_id: str) -> None:
        for task in self.pending:
            if task.task_id == task_id:
                self.pending.remove(task)
                log.info("task %s cancelled before it started%s", task_id, tracing.tag(task.trace))
                self.stats[TaskCancelled.code] += 1
                self.board.ended(TaskCancelled.code)
                self._answer(task, P.error_frames(task_id, TaskCancelled.code, "cancelled before it started"))
                return
        # Not here: it is finished, or running right now (the supervisor handles that one).

    # ---- tasks -------------------------------------------------------------------------
    def _run_next(self) -> None:
        task = self.pending.popleft()
        started_s = time.monotonic()
        if task.due_s is not None and started_s >= task.due_s:
            self.stats[DeadlineExceeded.code] += 1
            self.board.ended(DeadlineExceeded.code)
            self.board.hold(len(self.pending))
            self._answer(task, P.error_frames(task.task_id, DeadlineExceeded.code,
                                              "the task's deadline passed before it started; it was abandoned "
                                              "(not retried: give it a longer deadline_ms)"))
            return
        self._ran = True
        self.board.start(task.task_id, started_s, task.due_s, task.trace)
        outcome = "failed"  # unless the task says otherwise below
        try:
            frames, outcome = self._run(task)
            if task.due_s is not None and time.monotonic() >= task.due_s:
                # The supervisor may have answered already: the broker keeps the first answer.
                self.stats[DeadlineExceeded.code] += 1
                outcome = DeadlineExceeded.code
                frames = P.error_frames(task.task_id, DeadlineExceeded.code,
                                        f"the task's deadline passed while running in process {os.getpid()}; it was "
                                        "abandoned (not retried: give it a longer deadline_ms)")
            deliverable = self._deliverable(task, frames)
            if deliverable is not frames:  # replaced by ERROR result_too_large
                outcome = ResultTooLarge.code
        finally:
            ran_s = time.monotonic() - started_s
            self.board.finish(outcome, ran_s, len(self.pending))
        self.credit.ran(ran_s)
        self._answer(task, deliverable)

    def _run(self, task: Pending) -> tuple[list, str]:
        """The answer's frames and the outcome: "done" or "failed"."""
        msg = task.request
        started = time.perf_counter()
        try:
            data = task.payload.buffer if task.ref is None else self._read_input(task.ref[0])
            out, meta = self.ops.run(data, msg.pipeline, limits=self.limits, cache=self.cache)
        except TaskError as exc:
            self.stats["failed"] += 1
            return P.error_frames(msg.task_id, exc.code, exc.message, {"worker": self.name}), "failed"
        except MemoryError:
            self.stats["failed"] += 1
            return P.error_frames(msg.task_id, ImageTooLarge.code, "the worker ran out of memory on this image",
                                  {"worker": self.name}), "failed"
        except Exception as exc:  # a bug in an operation must not take the worker down
            self.stats["failed"] += 1
            log.exception("task %s failed unexpectedly%s", msg.task_id, tracing.tag(task.trace))
            return P.error_frames(msg.task_id, InternalError.code, f"{type(exc).__name__}: {exc}",
                                  {"worker": self.name}), "failed"
        self.stats["done"] += 1
        meta["worker"] = self.name
        meta["worker_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if task.ref is not None:
            name = self._write_result(task, out)
            if name is not None:
                meta["shm"] = True
                return P.reply_frames(msg.task_id, meta, name.encode()), "done"
        return P.reply_frames(msg.task_id, meta, out), "done"

    def _read_input(self, name: str) -> bytes:
        """A task's input by reference, bounded as it would be through the broker's socket."""
        limit = min(self.config.max_input_bytes, self.link.max_message_bytes or self.config.max_input_bytes)
        try:
            return shm.read_input(name, limit)
        except shm.ShmError as exc:
            if exc.errno == errno.EFBIG:
                raise ImageTooLarge(f"the input is over {limit} bytes, the most this worker (--max-input-mb) and "
                                    f"its broker (--max-message-mb) accept") from exc
            raise ImageError(f"the input could not be read from shared memory ({exc.strerror}): its client "
                             "cancelled the task or went away") from exc

    def _write_result(self, task: Pending, out) -> str | None:
        """The result beside its input; None: it goes inline (too large for the broker, which the
        caller refuses, or shared memory is full)."""
        limit = self.link.max_message_bytes
        if limit is not None and len(out) > limit:
            return None
        try:
            return shm.write_result(task.ref[0], out, task.ref[1]) if task.ref else None
        except shm.ShmError as exc:
            log.warning("task %s: shared memory refused the result (%s); it goes through the socket%s",
                        task.task_id, exc, tracing.tag(task.trace))
            return None

    def _deliverable(self, task: Pending, frames: list) -> list:
        """The answer, or ERROR result_too_large if the broker would refuse it (and drop this
        connection with it): the client learns why, and the slot comes back."""
        limit = self.link.max_message_bytes
        if limit is None:
            return frames
        size = sum(len(f) for f in frames)
        if size <= limit:
            return frames
        self.stats[ResultTooLarge.code] += 1
        log.warning("task %s: the result is %d bytes, over the broker's message limit of %d: answered %s%s",
                    task.task_id, size, limit, ResultTooLarge.code, tracing.tag(task.trace))
        return P.error_frames(task.task_id, ResultTooLarge.code,
                              f"the result is {size / 2**20:.1f} MiB, more than the broker accepts "
                              f"({limit / 2**20:.0f} MiB, broker flag --max-message-mb): ask for a smaller "
                              "output (resize, a lower JPEG quality) or raise the limit",
                              {"result_bytes": size, "max_message_bytes": limit})

    def _answer(self, task: Pending, frames: list) -> None:
        self.link.send(frames)
        self._slot_back(task.epoch)
        if not self.pending:
            self.credit.idle(time.monotonic())

    def _slot_back(self, epoch: int) -> None:
        if epoch != self.epoch and not self.draining:
            self.link.send(P.encode(P.Ready(capacity=1)))  # the current registration never counted it
