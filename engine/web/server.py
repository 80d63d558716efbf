"""How the gateway is served: uvicorn's HTTP/1.1 protocol (h11) with a deadline on request
headers and a bound on open connections, so that slow clients cannot crowd out real ones.

Uvicorn waits for a request's headers without limit, and a byte received on an idle
keep-alive connection cancels its keep-alive timer: 1,100 connections trickling one header
line every 10 s held the process's 1,024 descriptors and no one else got in. Here:

- a connection must finish its request headers within ``header_timeout_s`` of being opened
  (or of the end of its previous response), else it is closed;
- at most ``max_connections`` are open: a new one closes the one that has waited longest
  for its request headers (a slow client, or an idle keep-alive one a browser reopens by
  itself); only when every open connection is busy with a request is the new one answered
  503 ``busy`` and closed;
- the soft descriptor limit is raised to fit ``max_connections``, ``ACCEPT_TURNS`` ×
  ``listen_backlog`` (asyncio accepts up to a backlog's worth per turn of the loop, and a
  closed connection's descriptor is freed a few turns later) and ``FD_RESERVE``; where the
  hard limit is lower, ``max_connections`` is lowered to fit, with a warning.

Closed and refused connections are counted and logged at most once a minute, never one line
each. What this does not bound (slow request bodies, slow readers of responses, many
addresses) is a reverse proxy's job: docs/web.md, "Slow clients and a proxy".
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import fdlimit
from ..errors import BusyError
from .settings import WebSettings

log = logging.getLogger("engine.web")

FD_RESERVE = 128  # descriptors for the database, image files, ZeroMQ sockets and the rest
ACCEPT_TURNS = 3  # accepted connections in flight, in backlogs, before closed ones free their descriptors
LOG_EVERY_S = 60.0  # at most one summary line of closed and refused connections per this


class ConnectionGuard:
    """The open connections of one server, and those waiting for request headers (oldest first)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open: set[Any] = set()
        self.waiting: dict[Any, None] = {}  # insertion order: the longest waiting first
        self.counts = {"slow headers": 0, "closed for a new one": 0, "refused, all busy": 0}
        self.logged_at = -LOG_EVERY_S

    def admit(self, conn: Any) -> bool:
        """Make room for ``conn``: False when every open connection is busy with a request."""
        if len(self.open) >= self.max_connections:
            if not self.waiting:
                self.note("refused, all busy")
                return False
            oldest = next(iter(self.waiting))
            self.note("closed for a new one")
            oldest.close_waiting()
        self.open.add(conn)
        return True

    def discard(self, conn: Any) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)

    def note(self, what: str) -> None:
        """Count a closed or refused connection; log the counts at most once per LOG_EVERY_S."""
        self.counts[what] += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_S:
            crowded = self.counts["closed for a new one"] or self.counts["refused, all busy"]
            log.log(logging.WARNING if crowded else logging.INFO,
                    "connections closed since the last such line (at most one a minute): %s; at most %d open",
                    ", ".join(f"{n} {k}" for k, n in self.counts.items()), self.max_connections)
            self.counts = dict.fromkeys(self.counts, 0)
            self.logged_at = now


BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 5\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


class GuardedH11(H11Protocol):
    """Uvicorn's h11 protocol with a request-header deadline, under a ``ConnectionGuard``."""

    guard: ConnectionGuard  # both set per server by protocol_class()
    header_timeout_s: float

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._answering: object = None  # the request being answered when the wait began
        if self.guard.admit(self):
            self._wait_for_headers()
        else:
            body = (f"{BusyError.code}: the web gateway has {self.guard.max_connections} connections open, "
                    f"all busy with requests; try again in a few seconds\n").encode()
            transport.write(BUSY % (len(body), body))
            transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._answering:  # a new request's headers are in
            self._stop_waiting()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle is answered:  # no pipelined request began
            self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self.guard.discard(self)
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        self._stop_waiting()
        self._answering = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)
        self.guard.waiting[self] = None

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.waiting.pop(self, None)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        self.guard.note("slow headers")
        self.close_waiting()

    def close_waiting(self) -> None:
        """Close this connection, which has no request in progress."""
        self._stop_waiting()
        self.guard.discard(self)
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(settings: WebSettings) -> type[GuardedH11]:
    """A protocol class for one server: its own guard, the settings' header timeout."""
    return type("GuardedH11", (GuardedH11,), {"guard": ConnectionGuard(settings.max_connections),
                                              "header_timeout_s": settings.header_timeout_s})


def fit_descriptors(settings: WebSettings) -> WebSettings:
    """Raise the soft descriptor limit to what the connection settings need (up to the hard
    limit); where the hard limit is lower, lower ``max_connections`` to fit and say so."""
    beyond = ACCEPT_TURNS * settings.listen_backlog + FD_RESERVE
    need = settings.max_connections + beyond
    limits = fdlimit.raise_soft_limit(need)
    soft = need if limits is None else limits[0]
    if soft == resource.RLIM_INFINITY or soft >= need:
        return settings
    fits = max(1, soft - beyond)
    log.warning("the descriptor limit is %d (ulimit -Hn): at most %d connections open instead of %d "
                "(--max-connections, %d x --listen-backlog %d and %d for files need %d); raise the limit "
                "or lower those flags", soft, fits, settings.max_connections, ACCEPT_TURNS,
                settings.listen_backlog, FD_RESERVE, need)
    return dataclasses.replace(settings, max_connections=fits)


def uvicorn_options(settings: WebSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` / ``uvicorn.run`` that apply the settings above."""
    return {"http": protocol_class(settings), "backlog": settings.listen_backlog,
            "timeout_keep_alive": settings.keep_alive_s}
