"""The native front end: msgpack header + raw frames on a ROUTER (see ``engine.protocol``).

It owns the client socket, the table of connected clients (bounded) and their reply
path; tasks go to the broker through ``Broker.submit``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import zmq

from .. import protocol as P
from ..errors import BusyError, ProtocolError, Unauthorized
from ..security import CLIENTS
from . import sockets
from .front import Front, Origin

if TYPE_CHECKING:
    from .core import Broker

log = logging.getLogger("engine.broker")


class NativeFront(Front):
    name = "front"
    dedups = True  # clients choose task ids and resend them after a broker restart

    def __init__(self, broker: "Broker") -> None:
        super().__init__(broker.stats, broker.unread_limits)
        self.broker = broker
        self.config = broker.config
        self.sock = sockets.bind(broker.ctx, zmq.ROUTER, self.config.front, self.config, name="front",
                                 curve=broker.curve, role=CLIENTS)
        self.clients: dict[bytes, float] = {}  # routing id -> expiry (monotonic s)

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.sock, zmq.POLLIN)

    def handle(self, events: dict, now_s: float) -> None:
        if self.sock in events:
            sockets.drain(self.sock, self._on_message, self.stats, name=self.name)
        self._flush(now_s)

    def close(self) -> None:
        self.sock.close(linger=0)

    def _socket_for(self, peer) -> zmq.Socket:
        return self.sock

    # ---- incoming ----------------------------------------------------------------
    def _on_message(self, frames: list) -> None:
        route, body = frames[0].bytes, frames[1:]
        broker = self.broker
        client = broker.identity(frames[0], route)
        if client is None:  # a revoked key: refused before anything it sent is decoded
            self.stats[Unauthorized.code] += 1
            broker.metrics.refused(Unauthorized.code)
            self._send(route, P.error_frames(P.peek_task_id(body) if body else None, Unauthorized.code,
                                             "this client's key has been revoked from the broker's allow-list"))
            return
        try:
            msg, payloads = P.decode(body)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            broker.metrics.refused(ProtocolError.code)
            log.debug("bad message from client %s: %s", route.hex(), exc)
            self._send(route, P.error_frames(P.peek_task_id(body) if body else None, exc.code, str(exc)))
            return
        task_id = getattr(msg, "task_id", None)
        if not self._track(route):
            if isinstance(msg, (P.Request, P.Info)):
                self._send(route, P.error_frames(task_id, BusyError.code,
                                                 f"the broker serves {len(self.clients)} clients already "
                                                 f"(its limit); retry later"))
            elif isinstance(msg, P.Heartbeat):
                self._send(route, P.encode(P.Heartbeat(sender=broker.instance_id)))
            return
        origin = Origin(self, (route,), client=client)
        if isinstance(msg, P.Request):
            broker.submit(origin, msg, payloads[0])
        elif isinstance(msg, P.Heartbeat):
            self._send(route, P.encode(P.Heartbeat(sender=broker.instance_id)))
        elif isinstance(msg, P.Cancel):
            broker.cancel(origin, msg.task_id)
        elif isinstance(msg, P.Info):
            self._send(route, P.encode(P.Info(data=broker.info(you=origin.client))))
        elif isinstance(msg, P.Disconnect):
            self.forget(route)
        else:
            self._send(route, P.error_frames(task_id, ProtocolError.code,
                                             f"clients may not send {P.TYPE_NAMES[msg.TYPE]}"))

    def _track(self, route: bytes) -> bool:
        """Note that the client is alive; False if it is new and the table is full."""
        if route not in self.clients and len(self.clients) >= self.config.max_clients:
            return False
        self.clients[route] = time.monotonic() + self.broker.dispatcher.liveness_s
        return True

    def forget(self, route: bytes) -> None:
        self.clients.pop(route, None)
        self.outbox.forget((route,))
        self.broker.forget_origin(Origin(self, (route,)), f"client {route.hex()} went away")

    def expire(self, now_s: float) -> None:
        for route, expiry_s in list(self.clients.items()):
            if expiry_s <= now_s:
                self.forget(route)

    # ---- outgoing ----------------------------------------------------------------
    def reply(self, origin: Origin, task_id: str, meta: dict, payload: Any) -> None:
        self._send(origin.route[0], P.reply_frames(task_id, meta, payload))

    def reply_error(self, origin: Origin, task_id: str | None, code: str, message: str,
                    meta: dict | None = None) -> None:
        self._send(origin.route[0], P.error_frames(task_id, code, message, meta))

    def _send(self, route: bytes, frames: list) -> None:
        self._deliver(self.sock, (route,), [route, *frames])
