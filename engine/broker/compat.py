"""The older JSON/base64 format: ``{"task_id", "task", "image"}`` in and out.

Three sockets, as the older master had and one better: a PULL for requests and a PUSH
for results (a PUSH cannot address one client among several: with more than one client
connected, results go to whichever PULLing client ZeroMQ picks next), and a ROUTER on
which a REQ or DEALER client gets its reply on its own socket. The broker thread owns
them; requests become ordinary tasks through ``Broker.submit``.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import zmq

from .. import protocol as P
from ..security import CLIENTS

if TYPE_CHECKING:
    from .config import BrokerConfig
    from .core import Broker

log = logging.getLogger("engine.broker.compat")

FORMAT_OPS = {"jpeg", "png", "webp"}
MAX_JSON_BYTES = 96 * 1024 * 1024


class CompatError(ValueError):
    def __init__(self, task_id: Any, message: str, *, code: str = "bad_message") -> None:
        super().__init__(message)
        self.task_id = task_id
        self.code = code


def parse_request(raw: bytes, token: str = "") -> tuple[Any, str, bytes]:
    """(task_id, task, image bytes) from one JSON request, or CompatError saying what is wrong.

    With ``token`` set, the request must carry it as ``"token"`` (compared in constant time).
    """
    if len(raw) > MAX_JSON_BYTES:
        raise CompatError(None, f"request is {len(raw)} bytes; the limit is {MAX_JSON_BYTES}")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CompatError(None, f"request is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CompatError(None, 'request must be a JSON object {"task_id", "task", "image"}')
    task_id = obj.get("task_id")
    if token and not hmac.compare_digest(str(obj.get("token", "")).encode(), token.encode()):
        raise CompatError(task_id if isinstance(task_id, (str, int)) else None,
                          "request needs the broker's shared \"token\" (broker flag --compat-token)",
                          code="unauthorized")
    if task_id is None or isinstance(task_id, (dict, list)):
        raise CompatError(task_id, "request needs a \"task_id\" (string or number)")
    task = obj.get("task")
    if not isinstance(task, str) or not task.strip():
        raise CompatError(task_id, "request needs a \"task\" naming the operation, e.g. \"grayscale\" or \"edge\"")
    image = obj.get("image")
    if not isinstance(image, str):
        raise CompatError(task_id, "request needs an \"image\": the input JPEG as a base64 string")
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise CompatError(task_id, "\"image\" is not valid base64") from None
    if not data:
        raise CompatError(task_id, "\"image\" is empty")
    return task_id, task.strip(), data


def pipeline_for(task: str) -> str:
    """The older tasks answered in JPEG: add a JPEG step unless the task names a format."""
    names = {step.split(":", 1)[0].strip() for step in task.split("|")}
    return task if names & FORMAT_OPS else f"{task}|jpeg"


def reply_json(task_id: Any, task: str, image: bytes) -> bytes:
    return json.dumps({"task_id": task_id, "task": task,
                       "image": base64.b64encode(image).decode("ascii")}).encode()


def error_json(task_id: Any, code: str, message: str) -> bytes:
    return json.dumps({"task_id": task_id, "error": message, "code": code}).encode()


class CompatFront:
    def __init__(self, ctx: zmq.Context, config: "BrokerConfig", broker: "Broker") -> None:
        self.broker = broker
        self.token = config.compat_token
        self.pull = self._bind(ctx, zmq.PULL, config.compat_pull, config, broker.curve)
        self.push = self._bind(ctx, zmq.PUSH, config.compat_push, config, broker.curve)
        self.router = self._bind(ctx, zmq.ROUTER, config.compat_router, config, broker.curve)
        self._seq = 0
        self._unsent: deque[bytes] = deque()  # PUSH results waiting for a PULLing client
        self._poller: zmq.Poller | None = None
        log.info("compat JSON sockets: PULL %s, PUSH %s, ROUTER %s", config.compat_pull,
                 config.compat_push, config.compat_router)

    @staticmethod
    def _bind(ctx: zmq.Context, kind: int, endpoint: str, config: "BrokerConfig", curve=None) -> zmq.Socket:
        sock = ctx.socket(kind)
        sock.linger = 0
        if curve is not None:  # JSON clients then need a client key too (engine.security)
            curve.secure(sock, CLIENTS)
        sock.maxmsgsize = config.max_message_bytes
        if kind != zmq.PULL:
            sock.sndhwm = 0  # bounded by admitted tasks
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise OSError(f"compat socket cannot bind {endpoint}: {exc}") from exc
        return sock

    def register(self, poller: zmq.Poller) -> None:
        self._poller = poller
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)

    def close(self) -> None:
        for sock in (self.pull, self.push, self.router):
            sock.close(linger=0)

    def handle(self, events: dict) -> None:
        from .core import Origin

        if self._unsent and self.push in events:
            self._flush()
        for sock, kind in ((self.pull, "compat_push"), (self.router, "compat_router")):
            if sock not in events:
                continue
            for _ in range(256):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                route = tuple(f.bytes for f in frames[:-1])  # ROUTER: routing id (+ REQ's empty delimiter)
                self._on_request(Origin(kind, route, client=self._identity(kind, frames[-1])), frames[-1].bytes)

    def _identity(self, kind: str, frame: zmq.Frame) -> str:
        """Its key's name with CURVE ("" once revoked: refused), else one shared name per socket."""
        curve = self.broker.curve
        return (curve.identity(frame, CLIENTS) or "") if curve is not None else kind

    def _on_request(self, origin, raw: bytes) -> None:
        try:
            task_id, task, data = parse_request(raw, self.token)
            if self.broker.curve is not None and not origin.client:
                raise CompatError(task_id, "this client's key has been revoked from the broker's allow-list",
                                  code="unauthorized")
        except CompatError as exc:
            self._send(origin, error_json(exc.task_id, exc.code, str(exc)))
            return
        self._seq += 1
        origin = type(origin)(origin.kind, origin.route, extra=(task_id, task), client=origin.client)
        request = P.Request(task_id=f"compat-{self._seq}", pipeline=pipeline_for(task))
        self.broker.submit(origin, request, data)

    def reply(self, origin, payload: Any) -> None:
        task_id, task = origin.extra
        data = payload.bytes if isinstance(payload, zmq.Frame) else bytes(payload)
        self._send(origin, reply_json(task_id, task, data))

    def reply_error(self, origin, code: str, message: str) -> None:
        task_id = origin.extra[0] if origin.extra else None
        self._send(origin, error_json(task_id, code, message))

    def _send(self, origin, body: bytes) -> None:
        if origin.kind == "compat_router":
            self.router.send_multipart([*origin.route, body])
        else:
            self._unsent.append(body)
            self._flush()

    def _flush(self) -> None:
        """Send queued PUSH results; a PUSH with no connected PULL would block, so never wait."""
        while self._unsent:
            try:
                self.push.send(self._unsent[0], zmq.NOBLOCK)
            except zmq.Again:
                break
            self._unsent.popleft()
        if self._poller is not None:
            if self._unsent:
                self._poller.register(self.push, zmq.POLLOUT)
            elif self.push in dict(self._poller.sockets):
                self._poller.unregister(self.push)
