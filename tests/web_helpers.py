"""Helpers for the web gateway's tests: a real broker with local workers (from cluster_helpers'
Cluster), the gateway on uvicorn in a thread on a free port, and signed-up users.

The module-scoped fixtures built on them (broker, web, users) are in conftest.py.
"""
from __future__ import annotations

import re
import select
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from cluster_helpers import DATA, FAST_HEARTBEAT_S, free_port

from engine.web import WebSettings, create_app

START_TIMEOUT_S = 30.0
PASSWORD = "correct horse battery"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def jpeg(name: str = "coffee.jpg") -> bytes:
    return (DATA / name).read_bytes()


class WebServer:
    """The gateway app on a real uvicorn server, in a thread of this process."""

    def __init__(self, data_dir: Path, broker: str, *, wrap=None, **settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings.setdefault("heartbeat_interval_s", FAST_HEARTBEAT_S)
        settings.setdefault("broker_check_timeout_s", 2.0)
        settings.setdefault("task_timeout_s", 30.0)
        self.settings = WebSettings(broker=broker, data_dir=data_dir, **settings)
        self.app = create_app(self.settings)
        self.outer = wrap(self.app) if wrap else self.app  # what uvicorn serves
        config = uvicorn.Config(self.outer, host="127.0.0.1", port=self.port,
                                log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self) -> WebServer:
        self.thread.start()
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline_s:
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("the web gateway thread exited during start-up")
            time.sleep(0.05)
        raise TimeoutError(f"the web gateway did not start within {START_TIMEOUT_S} s")

    @property
    def parts(self):
        return self.app.state.parts

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class BodyCounter:
    """ASGI wrapper that counts the request-body bytes the app pulled in (what it could have
    held in memory), over all requests since the last ``reset``."""

    def __init__(self, app) -> None:
        self.app = app
        self.pulled_bytes = 0

    def reset(self) -> None:
        self.pulled_bytes = 0

    async def __call__(self, scope, receive, send) -> None:
        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                self.pulled_bytes += len(message.get("body", b""))
            return message

        await self.app(scope, counting_receive if scope["type"] == "http" else receive, send)


def send_chunked(url: str, path: str, total_bytes: int, *, headers: dict | None = None, prefix: bytes = b"",
                 chunk_bytes: int = 64 * 1024, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """POST ``prefix`` then ``total_bytes`` of zeros with Transfer-Encoding: chunked (no
    Content-Length) on a raw socket, stopping as soon as the server answers or closes;
    returns (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    chunk = f"{chunk_bytes:x}\r\n".encode() + bytes(chunk_bytes) + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if prefix:
            sock.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
        sent = 0
        try:
            while sent < total_bytes and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += chunk_bytes
            if sent >= total_bytes:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the rest: its answer is already on the way
        return _read_response(sock)


def send_declared(url: str, path: str, declared_bytes: int, *, headers: dict | None = None,
                  timeout_s: float = 30.0) -> tuple[int, bytes]:
    """A request that declares a Content-Length but sends no body; returns (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {declared_bytes}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        return _read_response(sock)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data) < _response_length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def _response_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return len(head) + 4 + int(match.group(1)) if match else 1 << 62


class User:
    """A signed-up account: a cookie session (``browser``) and an API token (``api``)."""

    def __init__(self, web: WebServer, name: str) -> None:
        self.name = name
        self.browser = httpx.Client(base_url=web.url, timeout=30.0, follow_redirects=False)
        page = self.browser.get("/signup")
        r = self.browser.post("/signup", data={"name": name, "password": PASSWORD, "csrf": csrf_of(page.text)})
        assert r.status_code == 303, r.text
        self.csrf = csrf_of(self.browser.get("/upload").text)
        r = self.browser.post("/api/v1/tokens", json={"name": "tests"}, headers={"X-CSRF-Token": self.csrf})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]
        self.api = httpx.Client(base_url=web.url, timeout=30.0,
                                headers={"Authorization": f"Bearer {self.token}"})

    def close(self) -> None:
        self.browser.close()
        self.api.close()


def log_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    """The log-in form, as a browser sends it (the page first, for its CSRF token)."""
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(page.text)})


def csrf_of(html: str) -> str:
    match = CSRF_META.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def wait_batch(client: httpx.Client, batch_id: str, timeout_s: float = 30.0) -> dict:
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        batch = client.get(f"/api/v1/batches/{batch_id}").json()
        if batch["finished"]:
            return batch
        time.sleep(0.1)
    raise TimeoutError(f"batch {batch_id} not finished within {timeout_s} s: {batch}")
