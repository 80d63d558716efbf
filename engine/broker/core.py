"""The broker: a ROUTER for clients, a ROUTER for workers, all owned by one thread.

Tasks are admitted into a bounded queue and handed to the least recently used worker
with a free slot (see ``state.Dispatcher``). Replies go back to the origin that sent
the request. Heartbeats both ways; a silent worker's tasks are queued again.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Hashable

import zmq

from .. import __version__
from .. import deadlines
from .. import protocol as P
from ..cache import ResultCache
from ..errors import ConfigError, ProtocolError, TaskError
from ..security import CLIENTS, HOW_TO_MAKE_KEYS, WORKERS, CurveServer
from ..wakeup import Wakeup
from .compat import CompatFront
from .config import BrokerConfig
from .quota import QuotaLimits, Quotas
from .state import Dispatcher, Task
from .workers import WorkerSide

log = logging.getLogger("engine.broker")

DRAIN_BATCH = 512  # messages read from one socket before looking at the others


@dataclass(frozen=True)
class Origin:
    """Where a task came from, so its reply goes there and nowhere else."""

    kind: str  # "front", "compat_push" or "compat_router"
    route: tuple = ()  # frames that address the peer (routing id, REQ envelope)
    extra: Any = field(default=None, compare=False)  # compat: the request's own task id and task
    client: str = field(default="", compare=False)  # who sent it: key name (CURVE) or routing id (quotas)

    @property
    def key(self) -> Hashable:
        return (self.kind, self.route)

    def dedup_key(self, task_id: str) -> Hashable | None:
        return (self.kind, self.route, task_id) if self.kind == "front" else None


class Broker(WorkerSide):
    def __init__(self, config: BrokerConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        self.instance_id = uuid.uuid4().hex[:12]
        self.ctx = context or zmq.Context.instance()
        self.dispatcher = Dispatcher(max_queue=config.max_queue,
                                     liveness_s=config.heartbeat_interval_s * config.heartbeat_liveness)
        self.stats = {"received": 0, "completed": 0, "failed": 0, "requeued": 0, "busy": 0,
                      "bad_messages": 0, "cancelled": 0, "late_replies": 0, "quota": 0, "unauthorized": 0}
        self._clients: dict[bytes, float] = {}  # front routing id -> expiry (monotonic s)
        self._wakeup = Wakeup()
        self._stopping = False
        self._started_s = time.monotonic()
        self.quotas = Quotas(QuotaLimits(max_in_flight=config.client_max_in_flight,
                                         rate_per_s=config.client_rate_per_s, burst=config.client_burst))
        self.curve = self._curve(config, self.ctx)  # its ZAP handler runs before any socket binds
        self.front = self._router(config.front, "front")
        self.back = self._router(config.back, "back")
        self.cache = ResultCache(config.cache_bytes) if config.cache_bytes > 0 else None
        self.compat = CompatFront(self.ctx, config, self) if config.compat else None
        self.endpoints = {"front": self._last(self.front), "back": self._last(self.back)}

    # ---- sockets -----------------------------------------------------------------
    @staticmethod
    def _curve(config: BrokerConfig, ctx: zmq.Context) -> CurveServer | None:
        if config.keys_dir:
            return CurveServer(ctx, config.keys_dir)
        if config.secure:
            raise ConfigError("--secure, but the broker has no keys (--keys-dir / ENGINE_KEYS_DIR is not set); "
                              + HOW_TO_MAKE_KEYS)
        return None

    def _router(self, endpoint: str, name: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.linger = 0
        if self.curve is not None:
            self.curve.secure(sock, WORKERS if name == "back" else CLIENTS)
        sock.router_handover = 1
        sock.sndhwm = 0  # replies are bounded by admitted tasks, never dropped for a slow peer
        sock.maxmsgsize = self.config.max_message_bytes
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise OSError(f"broker {name} socket cannot bind {endpoint}: {exc}") from exc
        return sock

    @staticmethod
    def _last(sock: zmq.Socket) -> str:
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def stop(self) -> None:
        """Ask the loop to stop (thread- and signal-safe)."""
        self._stopping = True
        self._wakeup.fire()

    def close(self) -> None:
        for sock in (self.front, self.back):
            sock.close(linger=0)
        if self.compat:
            self.compat.close()
        if self.curve is not None:
            self.curve.close()
        self._wakeup.close()

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> None:
        """Route until ``stop``; then drain in-flight work for up to ``drain_timeout_s``."""
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        poller.register(self._wakeup.fd, zmq.POLLIN)
        if self.compat:
            self.compat.register(poller)
        interval_s = self.config.heartbeat_interval_s
        next_beat_s = time.monotonic()
        drain_until_s = None
        log.info("broker %s: clients on %s, workers on %s", self.instance_id,
                 self.endpoints["front"], self.endpoints["back"])
        while True:
            if self._stopping and drain_until_s is None:
                drain_until_s = time.monotonic() + self.config.drain_timeout_s
                log.info("broker stopping: draining %d task(s) for up to %.1f s",
                         len(self.dispatcher.tasks), self.config.drain_timeout_s)
            if drain_until_s is not None and (not self.dispatcher.tasks or time.monotonic() >= drain_until_s):
                break
            timeout_ms = max(0, int((next_beat_s - time.monotonic()) * 1000))
            if drain_until_s is not None:
                timeout_ms = min(timeout_ms, 100)
            events = dict(poller.poll(timeout_ms))
            if self._wakeup.fd in events:
                self._wakeup.drain()
            if self.front in events:
                self._drain(self.front, self._on_front)
            if self.back in events:
                self._drain(self.back, self._on_back)
            if self.compat:
                self.compat.handle(events)
            self._dispatch()
            now_s = time.monotonic()
            if now_s >= next_beat_s:
                self._beat(now_s)
                next_beat_s = now_s + interval_s
        left = len(self.dispatcher.tasks)
        if left:
            log.warning("broker stopped with %d task(s) unfinished; clients will resend them", left)

    def _drain(self, sock: zmq.Socket, handler) -> None:
        for _ in range(DRAIN_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handler(frames)

    # ---- clients -----------------------------------------------------------------
    def _on_front(self, frames: list) -> None:
        route, body = frames[0].bytes, frames[1:]
        client = self._identity(frames[0], route)
        origin = Origin("front", (route,), client=client or "")
        try:
            msg, payloads = P.decode(body)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            log.debug("bad message from client %s: %s", route.hex(), exc)
            self._send_front(route, P.error_frames(P.peek_task_id(body) if body else None, exc.code, str(exc)))
            return
        self._clients[route] = time.monotonic() + self.dispatcher.liveness_s
        if isinstance(msg, (P.Request, P.Info)) and client is None:
            self.stats["unauthorized"] += 1
            self._send_front(route, P.error_frames(getattr(msg, "task_id", None), "unauthorized",
                                                   "this client's key has been revoked from the broker's allow-list"))
        elif isinstance(msg, P.Request):
            self.submit(origin, msg, payloads[0])
        elif isinstance(msg, P.Heartbeat):
            self._send_front(route, P.encode(P.Heartbeat(sender=self.instance_id)))
        elif isinstance(msg, P.Cancel):
            self._cancel(origin, msg.task_id)
        elif isinstance(msg, P.Info):
            self._send_front(route, P.encode(P.Info(data=dict(self.info(), you=origin.client))))
        elif isinstance(msg, P.Disconnect):
            self._forget_client(route)
        else:
            self._send_front(route, P.error_frames(getattr(msg, "task_id", None), "bad_message",
                                                   f"clients may not send {P.TYPE_NAMES[msg.TYPE]}"))

    def submit(self, origin: Origin, request: P.Request, payload: Any) -> None:
        """Admit a task from any front end, or answer busy (the one entry point for tasks)."""
        self.stats["received"] += 1
        if self.dispatcher.holds(origin, request.task_id):
            return  # a resend of a task we already hold
        if self._stopping or self.dispatcher.queue_full():
            self.stats["busy"] += 1
            why = "the broker is shutting down" if self._stopping else \
                f"the broker's queue is full ({self.config.max_queue} tasks waiting)"
            self.reply_error(origin, request.task_id, "busy", f"{why}; retry later or add workers")
            return
        refusal = self.quotas.check(origin.client, self.dispatcher.per_client.get(origin.client, 0),
                                    time.monotonic())
        if refusal is not None:
            self.stats["quota"] += 1
            self.reply_error(origin, request.task_id, "quota", refusal)
            return
        try:
            deadlines.requested_ms(request.options)
        except TaskError as exc:
            self.reply_error(origin, request.task_id, exc.code, exc.message)
            return
        cache_key = self._cache_key(request, payload)
        if cache_key is not None:
            hit = self.cache.get(cache_key)
            if hit is not None:
                data, meta = hit
                meta.update(cache="hit", broker_ms=0.0)
                self.stats["completed"] += 1
                self.reply(origin, request.task_id, meta, data)
                return
        task = Task(jid=self.dispatcher.new_jid(), origin=origin, task_id=request.task_id,
                    request=request, payload=payload, received_s=time.monotonic(), cache_key=cache_key)
        self.dispatcher.admit(task)

    def _identity(self, frame: zmq.Frame, route: bytes) -> str | None:
        """The client: its key's name with CURVE (None: revoked), else its self-chosen routing id."""
        if self.curve is not None:
            return self.curve.identity(frame, CLIENTS)
        text = route.decode("ascii", "replace")
        return text if route.isascii() and text.isprintable() else route.hex()

    def _cache_key(self, request: P.Request, payload: Any) -> str | None:
        """Input hash + canonical pipeline + engine version; None when not cacheable."""
        if self.cache is None or (request.options or {}).get("cache") is False:
            return None
        from .. import ops  # the broker needs the registry only for canonical pipelines

        try:
            canonical = ops.canonical(request.pipeline)
        except TaskError:
            return None  # invalid: the worker answers with the precise error
        data = payload.buffer if isinstance(payload, zmq.Frame) else payload
        return ResultCache.key(data, canonical, __version__)

    def _cancel(self, origin: Origin, task_id: str) -> None:
        task = self.dispatcher.cancel(origin, task_id)
        if task is None:
            return  # unknown or already done: the client ignores a late answer anyway
        self.stats["cancelled"] += 1
        if task.worker is not None:
            self._send_back(task.worker, P.encode(P.Cancel(task_id=self._worker_task_id(task.jid))))
        self.reply_error(origin, task_id, "cancelled", "the task was cancelled by its client")

    def _forget_client(self, route: bytes) -> None:
        self._clients.pop(route, None)
        dropped = self.dispatcher.drop_origin(("front", (route,)))
        for task in dropped:  # a worker drops those not started yet and stops a running one
            if task.worker is not None:
                self._send_back(task.worker, P.encode(P.Cancel(task_id=self._worker_task_id(task.jid))))
        if dropped:
            log.info("client %s went away: dropped %d task(s)", route.hex(), len(dropped))

    def _beat(self, now_s: float) -> None:
        beat = P.encode(P.Heartbeat(sender=self.instance_id))
        for wid in self.dispatcher.expired(now_s):
            self._send_back(wid, P.encode(P.Disconnect(reason="no heartbeat: declared dead")))
            self._remove_worker(wid, "missed heartbeats: declared dead")
        for wid in list(self.dispatcher.workers):
            self._send_back(wid, beat)
        for route, expiry_s in list(self._clients.items()):
            if expiry_s <= now_s:
                self._forget_client(route)
        self.quotas.forget_idle(now_s, self.dispatcher.per_client)

    # ---- replies -----------------------------------------------------------------
    def reply(self, origin: Origin, task_id: str, meta: dict, payload: Any) -> None:
        if origin.kind == "front":
            self._send_front(origin.route[0], P.encode(P.Reply(task_id=task_id, meta=meta), payload))
        else:
            self.compat.reply(origin, payload)

    def reply_error(self, origin: Origin, task_id: str | None, code: str, message: str,
                    meta: dict | None = None) -> None:
        if origin.kind == "front":
            self._send_front(origin.route[0], P.error_frames(task_id, code, message, meta))
        else:
            self.compat.reply_error(origin, code, message)

    def _send_front(self, route: bytes, frames: list) -> None:
        self.front.send_multipart([route, *frames], copy=False)

    def _send_back(self, wid: bytes, frames: list) -> None:
        self.back.send_multipart([wid, *frames], copy=False)

    def info(self) -> dict:
        now_s = time.monotonic()
        d = self.dispatcher
        return {"broker": self.instance_id, "uptime_s": round(now_s - self._started_s, 3),
                "queue_depth": len(d.queue), "in_flight": len(d.tasks) - len(d.queue),
                "max_queue": self.config.max_queue, "clients": len(self._clients),
                "workers": [w.describe(now_s) for w in d.workers.values()],
                "ops": d.offered_ops(), "cache": self.cache.stats() if self.cache is not None else None,
                "security": {"curve": self.curve is not None, "compat_token": bool(self.config.compat_token),
                             "client_max_in_flight": self.config.client_max_in_flight,
                             "client_rate_per_s": self.config.client_rate_per_s},
                "identities": self.quotas.describe(d.per_client), **self.stats}
