"""This engine's JSON/base64 compatibility path: a DEALER on the compat ROUTER socket,
as the older clients would talk to it (base64 both ways, JSON parse in the broker)."""
from __future__ import annotations

import base64
import json

from ..measure import TASK_TIMEOUT_S, drive, pick
from .base import free_port
from .engine import Engine


class CompatDriver:
    """Runs inside each client process: its own DEALER, its own window."""

    def __init__(self, endpoint: str, share: int) -> None:
        import zmq

        self._zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.share = share
        self._seq = 0
        self._pending: dict[int, list] = {}

    def _submit(self, data: bytes, pipeline: str) -> list:
        self._seq += 1
        handle = [self._seq]
        self._pending[self._seq] = handle
        body = {"task_id": self._seq, "task": pipeline, "image": base64.b64encode(data).decode("ascii")}
        self.sock.send(json.dumps(body).encode())
        return handle

    def _wait_some(self, handles: list) -> list:
        if not self.sock.poll(TASK_TIMEOUT_S * 1000):
            raise TimeoutError(f"no compat reply in {TASK_TIMEOUT_S:.0f} s")
        out = []
        while True:
            try:
                frames = self.sock.recv_multipart(self._zmq.NOBLOCK)
            except self._zmq.Again:
                return out
            reply = json.loads(frames[-1])
            handle = self._pending.pop(reply.get("task_id"), None)
            if handle is None:
                continue
            if "error" in reply:
                out.append((handle, RuntimeError(f"{reply.get('code')}: {reply['error']}")))
            else:
                out.append((handle, (base64.b64decode(reply["image"]), {})))

    def measure(self, images, pipeline, *, window, duration_s, min_tasks):
        return drive(lambda i: self._submit(pick(images, i), pipeline), self._wait_some,
                     window=max(1, window // self.share), duration_s=duration_s,
                     min_tasks=-(-min_tasks // self.share))

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


class Compat(Engine):
    name = "compat"
    label = "this engine, JSON/base64 compat path (DEALER to the compat ROUTER)"
    driver = "bench.peers.compat:CompatDriver"

    def _extra_flags(self) -> list[str]:
        self.router = f"tcp://127.0.0.1:{free_port()}"
        return ["--compat", "--compat-router", self.router,
                "--compat-pull", f"tcp://127.0.0.1:{free_port()}", "--compat-push", f"tcp://127.0.0.1:{free_port()}"]

    def _client_endpoint(self) -> str:
        return self.router

    def start(self) -> None:
        if self.broker:
            from .base import Skip

            raise Skip("the compat path is measured on a local broker only (its ROUTER address is not known)")
        super().start()

    def notes(self) -> list[str]:
        return [f"python -m engine.broker --compat --local-workers {self.workers}; {self.clients} client "
                "process(es), JSON requests with base64 images on a DEALER, bounded window"]
