"""The web gateway's access log: one line per request in the engine's log format, through
the ``engine.web.access`` logger (uvicorn's own access log is off).

``mode`` (``WebSettings.access_log``): ``all``; ``requests`` (the default) leaves out what
pages fetch by themselves over and over (the status page's and batch page's polling, static
files), so a person reads what people and scripts did; ``off``.
"""
from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("engine.web.access")

MODES = ("all", "requests", "off")
MAX_LOGGED_CHARS = 512  # of a request's path in its log line
# GET requests the pages repeat every few seconds, and static files.
QUIET_GETS = re.compile(r"^/(api/v1/status|status/events|api/v1/batches/[0-9a-f]+|static/.*)$")


def is_polling(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and QUIET_GETS.match(path) is not None


class AccessLog:
    """ASGI middleware: ``GET /upload 200 3.1 ms 2.4 KiB from 127.0.0.1``."""

    def __init__(self, app: ASGIApp, mode: str = "requests") -> None:
        if mode not in MODES:
            raise ValueError(f"access_log must be one of {', '.join(MODES)}, got {mode!r}")
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope.get("method", ""), scope.get("path", "")
        if scope["type"] != "http" or self.mode == "off" or (self.mode == "requests" and is_polling(method, path)):
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status, sent_bytes = 0, 0

        async def watching_send(message: Message) -> None:
            nonlocal status, sent_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            client = scope.get("client") or ("-", 0)
            ms = (time.perf_counter() - started_s) * 1000
            size = f"{sent_bytes / 1024:.1f} KiB" if sent_bytes >= 1024 else f"{sent_bytes} B"
            level = logging.WARNING if status >= 500 or status == 0 else logging.INFO
            log.log(level, "%s %s %s %.1f ms %s from %s", method, printable(path), status or "-", ms, size,
                    client[0])


def printable(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """``text`` for one log line: control characters escaped (a path with ``%0A`` cannot start a
    line of its own), cut to ``limit`` characters."""
    out = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return out if len(out) <= limit else out[:limit] + "..."
