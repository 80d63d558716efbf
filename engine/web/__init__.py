"""The web gateway: pages and an HTTP API in front of the broker (``python -m engine.web``).

``create_app(settings)`` builds the ASGI app; ``serve(...)`` runs it on uvicorn (blocking,
for a command line or a broker's ``--web`` flag run in its own process), with the header
deadline and connection limit of ``server.py``. The gateway
talks to the broker only through ``engine.AsyncClient``.
"""
from __future__ import annotations

import logging
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


def _as_engine_web(record: logging.LogRecord) -> bool:
    """Uvicorn's server messages ("Started server process", "Shutting down") are not errors:
    log them as engine.web instead of uvicorn.error."""
    record.name = "engine.web"
    return True


def serve(*, listen: str = DEFAULT_LISTEN, broker: str = DEFAULT_BROKER, data_dir: str | Path = "engine-web-data",
          log_level: str = "info", **settings) -> None:
    """Run the gateway until interrupted (SIGINT/SIGTERM end it cleanly).

    ``settings`` are any other ``WebSettings`` fields (``quota_bytes``, ``retention_days``...).
    """
    import uvicorn

    from .server import fit_descriptors, uvicorn_options

    logging.getLogger("uvicorn.error").addFilter(_as_engine_web)
    host, port = split_listen(listen)
    web = fit_descriptors(WebSettings(broker=broker, data_dir=Path(data_dir), **settings))
    # Uvicorn keeps its loggers but not its formats: lines come out in the engine's format (set
    # by the command line), and the access log is ours (engine.web.access, see access.py).
    # Slow clients: a header deadline and a connection limit (server.py).
    uvicorn.run(create_app(web), host=host, port=port, log_level=log_level.lower(), proxy_headers=False,
                server_header=False, timeout_graceful_shutdown=5, log_config=None, access_log=False,
                **uvicorn_options(web))
