"""The broker's worker-facing half: READY, results, retries, dead workers, dispatch.

A mixin of ``Broker``: the same object and thread, split out only to keep files small.
It uses the broker's ``dispatcher``, ``stats``, ``config``, ``curve``, ``instance_id``,
``reply``/``reply_error`` and ``_send_back``.
"""
from __future__ import annotations

import logging
import time

from .. import deadlines
from .. import protocol as P
from ..errors import ProtocolError, TaskFailed
from ..security import WORKERS
from .state import Task

log = logging.getLogger("engine.broker")


class WorkerSide:
    def _on_back(self, frames: list) -> None:
        wid = frames[0].bytes
        if self.curve is not None and self.curve.identity(frames[0], WORKERS) is None:
            self.stats["unauthorized"] += 1
            if wid in self.dispatcher.workers:
                self._remove_worker(wid, "lost its key (revoked from the allow-list)")
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
                log.info("worker %s joined from %s pid %s with %d slot(s)", wid.hex(), msg.host, msg.pid,
                         msg.capacity)
            return
        known = d.seen(wid, now_s)
        if isinstance(msg, (P.Reply, P.Error)):
            self._on_result(wid, msg, payloads, known)
        elif isinstance(msg, P.Disconnect):
            if msg.drain and known:
                d.drain(wid)
                log.info("worker %s is draining (%s)", wid.hex(), msg.reason or "no reason given")
            else:
                self._remove_worker(wid, f"disconnected ({msg.reason or 'no reason given'})")
            return
        elif not isinstance(msg, P.Heartbeat):
            log.warning("worker %s sent %s, which workers may not send", wid.hex(), P.TYPE_NAMES[msg.TYPE])
        if not known:
            self._send_back(wid, P.encode(P.Disconnect(reason="unknown worker: send READY")))

    def _worker_task_id(self, jid: int) -> str:
        return f"{jid}@{self.instance_id}"

    def _on_result(self, wid: bytes, msg: P.Reply | P.Error, payloads: list, known: bool) -> None:
        jid_text, _, instance = (msg.task_id or "").partition("@")
        if instance != self.instance_id or not jid_text.isdigit():
            log.debug("worker %s answered task %r of another broker instance: dropped", wid.hex(), msg.task_id)
            return
        jid = int(jid_text)
        d = self.dispatcher
        released = d.release(wid, jid)
        task = d.tasks.get(jid)
        if task is None:
            return  # finished already (a duplicate after requeue, or cancelled)
        if released is None:
            self.stats["late_replies"] += 1  # from a worker declared dead, or before a restart
        if isinstance(msg, P.Error) and msg.code == "worker_crashed":
            if released is None:
                return  # the broker already requeued it when it dropped that worker
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
        if task.worker is not None:  # another worker runs it after a requeue; its answer is dropped
            self._send_back(task.worker, P.encode(P.Cancel(task_id=self._worker_task_id(jid))))
        if isinstance(msg, P.Reply):
            self.stats["completed"] += 1
            meta = dict(msg.meta)
            meta["broker_ms"] = round((time.monotonic() - task.received_s) * 1000, 3)
            if task.cache_key is not None:
                self.cache.put(task.cache_key, payloads[0].bytes, dict(meta, cache="miss"))
            self.reply(task.origin, task.task_id, meta, payloads[0])
        else:
            self.stats["failed"] += 1
            self.reply_error(task.origin, task.task_id, msg.code, msg.message, msg.meta)

    def _fail(self, task: Task, last_error: str) -> None:
        self.dispatcher.finish(task.jid)
        self.stats["failed"] += 1
        text = (f"the task failed {task.attempts} time(s) on workers and was given up "
                f"(max_retries={self.config.max_retries}); last error: {last_error}")
        log.warning("task %s (%s): %s", task.jid, task.task_id, text)
        self.reply_error(task.origin, task.task_id, TaskFailed.code, text)

    def _remove_worker(self, wid: bytes, why: str) -> None:
        orphans = self.dispatcher.remove_worker(wid)
        log.info("worker %s %s; %d task(s) requeued", wid.hex(), why, len(orphans))
        for task in orphans:
            if task.attempts > self.config.max_retries:
                self.dispatcher.queue.remove(task)
                self._fail(task, f"worker {why}")
            else:
                self.stats["requeued"] += 1

    def _dispatch(self) -> None:
        for task, worker in self.dispatcher.assignments():
            req = task.request
            options = deadlines.forwarded(req.options, task.received_s, time.monotonic())
            request = P.Request(task_id=self._worker_task_id(task.jid), pipeline=req.pipeline, options=options)
            frames = P.encode(request, task.payload)
            self._send_back(worker.wid, frames)
