"""A self-pipe: lets any thread (or a signal handler) wake a loop blocked in zmq.Poller.

The loop registers ``fd`` for POLLIN; ``fire`` writes a byte; the loop calls ``drain``
when the fd is readable. Writing to a pipe is safe from threads and signal handlers,
so no ZeroMQ socket is ever touched outside its owning thread.
"""
from __future__ import annotations

import os


class Wakeup:
    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # a full pipe already means "wake up"

    def fire(self) -> None:
        try:
            os.write(self._write_fd, b"x")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def drain(self) -> None:
        os.read(self.fd, 4096)

    def close(self) -> None:
        for fd in (self.fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
