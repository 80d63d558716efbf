"""The web gateway: pages and an HTTP API in front of the broker (``python -m engine.web``).

``create_app(settings)`` builds the ASGI app; ``serve(...)`` runs it on uvicorn (blocking,
for a command line or a broker's ``--web`` flag run in its own process). The gateway
talks to the broker only through ``engine.AsyncClient``.
"""
from __future__ import annotations

from pathlib import Path

from .settings import DEFAULT_BROKER, DEFAULT_LISTEN, WebSettings

__all__ = ["WebSettings", "create_app", "serve", "split_listen"]


def create_app(settings: WebSettings | None = None):
    from .app import create_app as _create

    return _create(settings or WebSettings())


def split_listen(listen: str) -> tuple[str, int]:
    """("host", port) from "host:port" (IPv6 as "[::1]:8080")."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants host:port, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(*, listen: str = DEFAULT_LISTEN, broker: str = DEFAULT_BROKER, data_dir: str | Path = "engine-web-data",
          log_level: str = "info", **settings) -> None:
    """Run the gateway until interrupted (SIGINT/SIGTERM end it cleanly).

    ``settings`` are any other ``WebSettings`` fields (``quota_bytes``, ``retention_days``...).
    """
    import uvicorn

    host, port = split_listen(listen)
    app = create_app(WebSettings(broker=broker, data_dir=Path(data_dir), **settings))
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), proxy_headers=False,
                server_header=False, timeout_graceful_shutdown=5)
