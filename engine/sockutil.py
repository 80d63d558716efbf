"""Socket helpers shared by every role: receive and send multipart messages on the hot
path, and drain one socket without letting one message stop the loop.

``recv_frames``/``send_frames`` do what pyzmq's ``recv_multipart``/``send_multipart`` do
with ``copy=False``, minus the per-frame ``getsockopt(RCVMORE)`` and the ``IntFlag``
arithmetic (each ``SNDMORE | flags`` builds an enum object): about 15 us less per
message pair on this machine, which is a quarter of the broker's budget per task.
"""
from __future__ import annotations

import logging
from typing import Callable

import zmq

# Frames up to this size are copied into the message when sent; larger ones are lent to
# libzmq (pyzmq's zero copy, freed through its garbage-collector thread). Measured here as
# process CPU per message sent over TCP until the peer had it: 8 KiB 16 us copied, 24-27
# lent; 32 KiB about even; 80 KiB 67-84 copied, 61-63 lent; 800 KiB 540-590 copied,
# 260 lent. pyzmq's own default, 64 KiB, sits at the crossing. Received zmq.Frame objects
# are always forwarded by reference.
COPY_THRESHOLD_BYTES = 64 * 1024
NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)


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


def drain(sock: zmq.Socket, handler: Callable[[list], None], stats: dict, log: logging.Logger, *,
          name: str, batch: int = 256) -> None:
    """Handle up to ``batch`` waiting messages (zero-copy frames). A handler that raises
    costs that message only: logged with its traceback, counted in ``stats['internal_errors']``."""
    for _ in range(batch):
        try:
            frames = recv_frames(sock)
        except zmq.Again:
            return
        try:
            handler(frames)
        except Exception:  # a bug must cost one message, never the process
            stats["internal_errors"] = stats.get("internal_errors", 0) + 1
            log.exception("a message on the %s socket could not be handled; dropped it (a bug: please report)",
                          name)
