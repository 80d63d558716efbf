"""What every front end shares: where a task came from, and a reply path that never grows
without bound for a peer that does not read.

A front end (``native.NativeFront``, ``compat.CompatFront``) owns its sockets and its
reply path: the broker hands it ``reply``/``reply_error`` for the tasks it admitted, and
asks it ``refusal`` before admitting one more task from a peer.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zmq

from ..logbound import LogBound
from ..sockutil import NOBLOCK, send_frames
from .outbox import Outbox, UnreadLimits

if TYPE_CHECKING:
    from .state import Payload

log = logging.getLogger("engine.broker")


@dataclass(slots=True, eq=False)
class Origin:
    """Where a task came from, so its reply goes there and nowhere else (made once per
    request: a plain slotted class, which is cheaper to build than a frozen one)."""

    front: Front  # the front end that admitted it (its reply path)
    route: tuple = ()  # what addresses the peer on that front (routing id, REQ envelope)
    extra: Any = field(default=None, compare=False)  # compat: the request's own task id and task
    client: str = field(default="", compare=False)  # who sent it: key name (CURVE) or routing id (quotas)

    @property
    def key(self) -> Hashable:
        return (self.front.name, self.route)

    def dedup_key(self, task_id: str) -> Hashable | None:
        """Resends of one task are recognised only where the client chooses task ids."""
        return (self.front.name, self.route, task_id) if self.front.dedups else None


class Front:
    """Base of the front ends: delivery through an ``Outbox``."""

    name = ""
    dedups = False

    def __init__(self, stats: dict, limits: UnreadLimits) -> None:
        self.stats = stats
        self.outbox = Outbox(limits)
        self._drop_lines = LogBound(log, f"drops of unread replies on the {self.name} socket", by="peer")

    def reply(self, origin: Origin, task_id: str, meta: dict, payload: Payload) -> None:
        """Send a task's result back where it came from."""
        raise NotImplementedError

    def reply_error(self, origin: Origin, task_id: str | None, code: str, message: str,
                    meta: dict | None = None) -> None:
        """Send a task's error (or a refusal of a request) back where it came from."""
        raise NotImplementedError

    def by_reference(self, origin: Origin) -> bool:
        """The peer proved it shares the broker's host: it may send images by reference."""
        return False

    def refusal(self, origin: Origin) -> str | None:
        return self.outbox.refusal(origin.route)

    def _deliver(self, sock: zmq.Socket, peer: Hashable, frames: list) -> None:
        """Send now if libzmq takes it, else keep it for the peer (bounded); a gone peer's reply is dropped."""
        now_s = time.monotonic()
        if not self.outbox.holding(peer) and self._try(sock, peer, frames):
            return
        dropped = self.outbox.hold(peer, frames, now_s)
        if dropped:
            self.stats["unread_dropped"] += dropped
            self._drop_lines.log(peer, "%s peer %s does not read its results: dropped %d waiting result(s) to stay "
                                 "under %g MiB / %d results", self.name, _show(peer), dropped,
                                 self.outbox.limits.drop_bytes / 2**20, self.outbox.limits.drop_tasks)

    def _try(self, sock: zmq.Socket, peer: Hashable, frames: list) -> bool:
        """True if sent or undeliverable (peer gone: dropped); False if it must wait."""
        try:
            send_frames(sock, frames, NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.stats["undeliverable"] += 1
            log.debug("%s peer %s is gone: a reply was dropped", self.name, _show(peer))
            return True

    def _socket_for(self, peer: Hashable) -> zmq.Socket:
        """The socket that reaches ``peer`` (a front end with several sockets tells them apart)."""
        raise NotImplementedError

    def _flush(self, now_s: float) -> None:
        """Retry the held replies whose back-off has passed, oldest first, until libzmq refuses."""
        outbox = self.outbox
        for peer in outbox.due(now_s):
            sock = self._socket_for(peer)
            while (head := outbox.head(peer)) is not None:
                if not self._try(sock, peer, head):
                    outbox.blocked(peer, now_s)
                    break
                outbox.sent_head(peer)

    def next_flush_s(self) -> float:
        return self.outbox.next_due_s()


def _show(peer: Hashable) -> str:
    if isinstance(peer, tuple) and peer and isinstance(peer[0], bytes):
        return peer[0].hex()[:16]
    return str(peer)
