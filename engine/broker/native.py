"""The native front end: msgpack header + raw frames on a ROUTER (see ``engine.protocol``).

It owns the client socket, the table of connected clients (bounded) and their reply
path; tasks go to the broker through ``Broker.submit``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import zmq

from .. import protocol as P
from .. import sockutil
from ..errors import BusyError, ProtocolError, Unauthorized
from ..security import CLIENTS
from .config import DRAIN_BATCH, REPLY_PIPE_MESSAGES
from .front import Front, Origin

if TYPE_CHECKING:
    from .core import Broker
    from .state import Payload

log = logging.getLogger("engine.broker")


class NativeFront(Front):
    name = "front"
    dedups = True  # clients choose task ids and resend them after a broker restart

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.stats, broker.unread_limits)
        self.broker = broker
        self.config = broker.config
        self.sock = sockutil.bind(broker.ctx, zmq.ROUTER, self.config.front, name="front", curve=broker.curve,
                                  role=CLIENTS, max_message_bytes=self.config.max_message_bytes,
                                  sndhwm=REPLY_PIPE_MESSAGES)
        self.clients: dict[bytes, float] = {}  # routing id -> expiry (monotonic s)
        self._blocked: set[bytes] = set()  # clients whose replies wait in the outbox (the hot path knows)
        self._shared: set[bytes] = set()  # clients that proved they share our host (engine.shm)

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.sock, zmq.POLLIN)

    def handle(self, events: dict, now_s: float) -> None:
        if self.sock in events:
            lane = self.broker.lane
            if lane is not None:
                sockutil.drain_pump(lane.pump_front, self._on_message, self.stats, log, name=self.name,
                                    batch=DRAIN_BATCH)
            else:
                sockutil.drain(self.sock, self._on_message, self.stats, log, name=self.name, batch=DRAIN_BATCH)
        self._flush(now_s)
        for route in list(self._blocked):  # clients with held replies: tell the hot path where they stand
            self._tell_lane(route)

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
            broker.metrics.refused(Unauthorized.code)
            self._send(route, P.error_frames(P.peek_task_id(body) if body else None, Unauthorized.code,
                                             "this client's key has been revoked from the broker's allow-list"))
            return
        try:
            msg, payloads = P.decode(body)
        except ProtocolError as exc:
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
                self._send(route, broker.heartbeat(client=True))
            return
        origin = Origin(self, (route,), client=client)
        if isinstance(msg, P.Request):
            broker.submit(origin, msg, payloads[0])
        elif isinstance(msg, P.Heartbeat):
            if msg.shm is not None:
                self._proved(route, msg.shm)
            self._send(route, broker.heartbeat(client=True))
        elif isinstance(msg, P.Cancel):
            broker.cancel(origin, msg.task_id)
        elif isinstance(msg, P.Info):
            history = (msg.data or {}).get("history") is True  # the one option INFO takes
            self._send(route, P.encode(P.Info(data=broker.info(you=origin.client, history=history))))
        elif isinstance(msg, P.Disconnect):
            self.forget(route)
        else:
            self._send(route, P.error_frames(task_id, ProtocolError.code,
                                             f"clients may not send {P.TYPE_NAMES[msg.TYPE]}"))

    def _proved(self, route: bytes, proof: str) -> None:
        """A client's proof that it reads our shared-memory key: its tasks may come by reference."""
        shared = self.broker.proves(proof, route)
        if shared:
            self._shared.add(route)
        else:
            self._shared.discard(route)
        if self.broker.lane is not None:
            self.broker.lane.core.set_route_shm(route, shared)

    def by_reference(self, origin: Origin) -> bool:
        return origin.route[0] in self._shared

    def shared_clients(self) -> int:
        return len(self._shared)

    def _track(self, route: bytes) -> bool:
        """Note that the client is alive; False if it is new and the table is full."""
        if route not in self.clients and len(self.clients) >= self.config.max_clients:
            return False
        new = route not in self.clients
        self.clients[route] = time.monotonic() + self.broker.dispatcher.liveness_s
        if new and self.broker.lane is not None:
            self.broker.lane.core.add_route(route)
        return True

    def forget(self, route: bytes) -> None:
        self.clients.pop(route, None)
        self.outbox.forget((route,))
        self._blocked.discard(route)
        if route in self._shared:
            self._shared.discard(route)
            self.broker.sweep_soon()
        self.broker.forget_origin(Origin(self, (route,)), f"client {route.hex()} went away")

    def expire(self, now_s: float) -> None:
        lane = self.broker.lane
        liveness_s = self.broker.dispatcher.liveness_s
        for route, expiry_s in list(self.clients.items()):
            if expiry_s <= now_s and (lane is None or lane.core.route_seen_s(route) + liveness_s <= now_s):
                self.forget(route)

    # ---- outgoing ----------------------------------------------------------------
    def reply(self, origin: Origin, task_id: str, meta: dict, payload: Payload) -> None:
        self._send(origin.route[0], P.reply_frames(task_id, meta, payload))

    def reply_error(self, origin: Origin, task_id: str | None, code: str, message: str,
                    meta: dict | None = None) -> None:
        self._send(origin.route[0], P.error_frames(task_id, code, message, meta))

    def hold_reply(self, route: bytes, frames: list) -> None:
        """A reply the hot path could not send now (the client does not read): the outbox keeps it
        (or it went out after all, and the hot path may answer this client again)."""
        self._send(route, frames)
        self._tell_lane(route)

    def _send(self, route: bytes, frames: list) -> None:
        self._deliver(self.sock, (route,), [route, *frames])
        if self.broker.lane is not None and (route in self._blocked or self.outbox.holding((route,))):
            self._tell_lane(route)

    def _tell_lane(self, route: bytes) -> None:
        """The hot path sends a client's replies itself only while none waits here, and admits
        its tasks while it is under the outbox's refuse limits."""
        lane = self.broker.lane
        if lane is None:
            return
        peer = (route,)
        holding = self.outbox.holding(peer)
        if holding:
            self._blocked.add(route)
        else:
            self._blocked.discard(route)
        lane.core.block_route(route, holding, self.outbox.refusal(peer) is not None)
