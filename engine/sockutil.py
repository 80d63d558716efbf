"""Socket helpers shared by every role: drain one socket without letting one message stop the loop."""
from __future__ import annotations

import logging
from typing import Callable

import zmq


def drain(sock: zmq.Socket, handler: Callable[[list], None], stats: dict, log: logging.Logger, *,
          name: str, batch: int = 256) -> None:
    """Handle up to ``batch`` waiting messages (zero-copy frames). A handler that raises
    costs that message only: logged with its traceback, counted in ``stats['internal_errors']``."""
    for _ in range(batch):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        try:
            handler(frames)
        except Exception:  # a bug must cost one message, never the process
            stats["internal_errors"] = stats.get("internal_errors", 0) + 1
            log.exception("a message on the %s socket could not be handled; dropped it (a bug: please report)",
                          name)
