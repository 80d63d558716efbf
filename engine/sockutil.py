"""Socket helpers shared by every role, in one place: bind with the broker's options, open a
DEALER to a broker, receive and send multipart messages on the hot path, and drain one
socket without letting one message stop the loop.

``recv_frames``/``send_frames`` do what pyzmq's ``recv_multipart``/``send_multipart`` do
with ``copy=False``, minus the per-frame ``getsockopt(RCVMORE)`` and the ``IntFlag``
arithmetic (each ``SNDMORE | flags`` builds an enum object): about 15 us less per
message pair on this machine, which is a quarter of the broker's budget per task.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import zmq

from . import handshake

# Frames up to this size are copied into the message when sent; larger ones are lent to
# libzmq (pyzmq's zero copy, freed through its garbage-collector thread). Measured here as
# process CPU per message sent over TCP until the peer had it: 8 KiB 16 us copied, 24-27
# lent; 32 KiB about even; 80 KiB 67-84 copied, 61-63 lent; 800 KiB 540-590 copied,
# 260 lent. pyzmq's own default, 64 KiB, sits at the crossing. Received zmq.Frame objects
# are always forwarded by reference.
COPY_THRESHOLD_BYTES = 64 * 1024
NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
DRAIN_BATCH = 256  # messages read from one socket before looking at the others
# A connection that has not finished the ZMTP handshake (greeting, and CURVE's) by then is closed:
# idle TCP connections cannot hold the broker's descriptors for long (libzmq's default is 30 s).
HANDSHAKE_TIMEOUT_MS = 10_000

# The socket class of a context: zmq.Socket, or zmq.asyncio.Socket for an asyncio context.
SocketT = TypeVar("SocketT", bound=zmq.Socket)


def recv_frames(sock: zmq.Socket, flags: int = NOBLOCK) -> list:
    """One whole message as zmq.Frame objects (raises zmq.Again when there is none)."""
    frame = sock.recv(flags, copy=False)
    parts = [frame]
    while frame.more:  # the other parts are there already: ZeroMQ delivers a message whole
        frame = sock.recv(flags, copy=False)
        parts.append(frame)
    return parts


def send_frames(sock: zmq.Socket, frames: list, flags: int = 0) -> None:
    """Send frames (bytes or zmq.Frame) as one message without copying large ones."""
    last = len(frames) - 1
    more = flags | SNDMORE
    for i, frame in enumerate(frames):
        sock.send(frame, more if i < last else flags, copy=False)


def waiting(sock: zmq.Socket, batch: int = DRAIN_BATCH) -> Iterator[list]:
    """Up to ``batch`` messages already waiting on ``sock`` (zero-copy frames); stops at the first
    ``zmq.Again``. The one receive loop of every role."""
    for _ in range(batch):
        try:
            frames = recv_frames(sock)
        except zmq.Again:
            return
        yield frames


def drain(sock: zmq.Socket, handler: Callable[[list], None], stats: dict, log: logging.Logger, *,
          name: str, batch: int = DRAIN_BATCH) -> None:
    """Handle up to ``batch`` waiting messages (zero-copy frames). A handler that raises
    costs that message only: logged with its traceback, counted in ``stats['internal_errors']``."""
    for frames in waiting(sock, batch):
        handle(handler, frames, stats, log, name=name)


def drain_pump(pump: Callable[[], list | None], handler: Callable[[list], None], stats: dict,
               log: logging.Logger, *, name: str, batch: int = DRAIN_BATCH) -> None:
    """``drain`` for a socket the broker's hot path reads: up to ``batch`` of the messages it hands on."""
    for _ in range(batch):
        try:
            frames = pump()
        except Exception:  # a bug in the hot path: the message it was reading is lost, the broker goes on
            stats["internal_errors"] = stats.get("internal_errors", 0) + 1
            log.exception("the hot path failed reading the %s socket (a bug: please report)", name)
            return
        if frames is None:
            return
        handle(handler, frames, stats, log, name=name)


def handle(handler: Callable[[list], None], frames: list, stats: dict, log: logging.Logger, *, name: str) -> None:
    """One message to its handler; a handler that raises costs that message only."""
    try:
        handler(frames)
    except Exception:  # a bug must cost one message, never the process
        stats["internal_errors"] = stats.get("internal_errors", 0) + 1
        log.exception("a message on the %s socket could not be handled; dropped it (a bug: please report)", name)


def dealer(ctx: zmq.Context[SocketT], address: str, routing_id: bytes, *, keys: Any = None,
           sndhwm: int | None = None, monitor: bool = False) -> tuple[SocketT, SocketT | None]:
    """A DEALER connected to a broker, as every peer opens one, and (``monitor``) the socket that
    reports its handshakes (``engine.handshake``; attached before connecting, so none is missed).
    No linger; a routing id that stays the same across reconnects (the broker knows the peer's
    tasks by it); large frames copied rather than lent (``COPY_THRESHOLD_BYTES``); CURVE when
    ``keys`` (``security.PeerKeys``) are given; ``sndhwm`` when set. Works with any context's
    sockets (``zmq.asyncio`` too)."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if sndhwm is not None:
        sock.sndhwm = sndhwm
    sock.copy_threshold = COPY_THRESHOLD_BYTES
    sock.routing_id = routing_id
    if keys is not None:
        keys.apply(sock)
    mon = handshake.monitor(sock) if monitor else None
    sock.connect(address)
    return sock, mon


def bind(ctx: zmq.Context, kind: int, endpoint: str, *, name: str, max_message_bytes: int, sndhwm: int,
         curve: Any = None, role: str = "", handover: bool = False) -> zmq.Socket:
    """A broker's bound socket with its limits: message size, a short per-peer send queue, a
    bounded handshake and, for ROUTERs, EHOSTUNREACH/EAGAIN instead of silent drops (the caller
    holds or drops the reply, see ``broker.outbox``)."""
    sock = ctx.socket(kind)
    sock.linger = 0
    if curve is not None:
        curve.secure(sock, role)
    sock.maxmsgsize = max_message_bytes
    sock.handshake_ivl = HANDSHAKE_TIMEOUT_MS
    sock.copy_threshold = COPY_THRESHOLD_BYTES
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


def last_endpoint(sock: zmq.Socket) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)
