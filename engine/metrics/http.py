"""Serving a registry over HTTP (GET /metrics, text format) in a daemon thread, and the
``--metrics-listen HOST:PORT`` flag the broker and worker command lines add.

The HTTP thread only reads a registry (see ``store``): it never touches a ZeroMQ
socket or the broker's state. It binds loopback unless told otherwise; the endpoint
has no authentication, so open it (0.0.0.0) only where the network is private.
"""
from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from ..errors import ConfigError
from ..settings import flag

LOOPBACK = "127.0.0.1"
# The ports the deployment recipes use (deploy/), shown as examples by the broker's and the
# worker's --help.
BROKER_PORT = 9464
WORKER_PORT = 9465
ENV_METRICS_LISTEN = "ENGINE_METRICS_LISTEN"


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


def serve(registry: CollectorRegistry, host: str = LOOPBACK, port: int = 0) -> MetricsServer:
    """Start serving ``registry`` on http://HOST:PORT/metrics (port 0: any free port)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another "
                          f"HOST:PORT with --metrics-listen (or {ENV_METRICS_LISTEN})") from None
    return MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)


def parse_listen(text: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 as [::1]:9464) to (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--metrics-listen {text!r}: expected HOST:PORT, e.g. {LOOPBACK}:{BROKER_PORT} "
                          f"(0.0.0.0:{BROKER_PORT} to let a Prometheus on another machine scrape it)")
    return host, int(port)


def add_flag(parser: argparse.ArgumentParser, *, example_port: int) -> None:
    """Add ``--metrics-listen`` (env ENGINE_METRICS_LISTEN; empty: no metrics endpoint)."""
    flag(parser, "--metrics-listen", env=ENV_METRICS_LISTEN, default="",
         help=f"serve Prometheus metrics on http://HOST:PORT/metrics, e.g. {LOOPBACK}:{example_port} "
              f"(0.0.0.0:{example_port} lets a Prometheus on another machine scrape it; the endpoint has no "
              "authentication) (empty: off)")


def start(registry: CollectorRegistry, listen: str) -> MetricsServer | None:
    """The flag's value to a running server, or None when it is empty."""
    if not listen:
        return None
    return serve(registry, *parse_listen(listen))
