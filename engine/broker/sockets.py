"""The broker's socket helpers, in one place: bind with the shared options, and drain one
socket without letting one message stop the loop."""
from __future__ import annotations

import logging
from typing import Callable

import zmq

from .. import sockutil
from .config import REPLY_PIPE_MESSAGES, BrokerConfig

log = logging.getLogger("engine.broker")

DRAIN_BATCH = 512  # messages read from one socket before looking at the others
# A connection that has not finished the ZMTP handshake (greeting, and CURVE's) by then is closed:
# idle TCP connections cannot hold the broker's descriptors for long (libzmq's default is 30 s).
HANDSHAKE_TIMEOUT_MS = 10_000


def bind(ctx: zmq.Context, kind: int, endpoint: str, config: BrokerConfig, *, name: str, curve=None,
         role: str = "", handover: bool = False, sndhwm: int = REPLY_PIPE_MESSAGES) -> zmq.Socket:
    """A bound socket with the broker's limits: message size, a short per-peer send queue
    and, for ROUTERs, EHOSTUNREACH/EAGAIN instead of silent drops (the caller holds or
    drops the reply, see ``outbox``)."""
    sock = ctx.socket(kind)
    sock.linger = 0
    if curve is not None:
        curve.secure(sock, role)
    sock.maxmsgsize = config.max_message_bytes
    sock.handshake_ivl = HANDSHAKE_TIMEOUT_MS
    sock.copy_threshold = sockutil.COPY_THRESHOLD_BYTES
    if kind != zmq.PULL:
        sock.sndhwm = sndhwm
    if kind == zmq.ROUTER:
        sock.router_mandatory = 1
        # A live peer's routing id cannot be taken over by another connection: a client
        # that learnt someone's id cannot steal their replies.
        sock.router_handover = 1 if handover else 0
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        hint = ""
        if exc.errno == zmq.EADDRINUSE:
            port = endpoint.rsplit(":", 1)[-1]
            hint = (f": another process listens there (another broker, or make run?). `ss -ltnp 'sport = :{port}'` "
                    f"shows which; stop it, or give this broker another port with --{name.lower().replace(' ', '-')}")
        raise OSError(f"broker {name} socket cannot bind {endpoint}: {exc}{hint}") from exc
    return sock


def drain(sock: zmq.Socket, handler: Callable[[list], None], stats: dict, *, name: str,
          batch: int = DRAIN_BATCH) -> None:
    """``sockutil.drain`` with the broker's logger and batch size."""
    sockutil.drain(sock, handler, stats, log, name=name, batch=batch)


def drain_pump(pump: Callable[[], list | None], handler: Callable[[list], None], stats: dict, *, name: str,
               batch: int = DRAIN_BATCH) -> None:
    """``drain`` for a socket the hot path reads: up to ``batch`` of the messages it hands on."""
    for _ in range(batch):
        try:
            frames = pump()
        except Exception:  # a bug in the hot path: the message it was reading is lost, the broker goes on
            stats["internal_errors"] = stats.get("internal_errors", 0) + 1
            log.exception("the hot path failed reading the %s socket (a bug: please report)", name)
            return
        if frames is None:
            return
        handle(handler, frames, stats, name=name)


def handle(handler: Callable[[list], None], frames: list, stats: dict, *, name: str) -> None:
    """One message to its handler; a handler that raises costs that message only."""
    try:
        handler(frames)
    except Exception:  # a bug must cost one message, never the process
        stats["internal_errors"] = stats.get("internal_errors", 0) + 1
        log.exception("a message on the %s socket could not be handled; dropped it (a bug: please report)", name)


def last_endpoint(sock: zmq.Socket) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
