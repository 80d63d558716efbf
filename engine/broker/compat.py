"""The older JSON/base64 format: ``{"task_id", "task", "image"}`` in and out.

Three sockets, as the older master had and one better: a PULL for requests and a PUSH
for results (a PUSH cannot address one client among several: with more than one client
connected, results go to whichever PULLing client ZeroMQ picks next), and a ROUTER on
which a REQ or DEALER client gets its reply on its own socket. The broker thread owns
them; requests become ordinary tasks through ``Broker.submit``.

Every request is checked cheaply first (size, then the shared token found by a bounded
scan), then decoded by a JSON reader that refuses non-finite numbers and deep nesting;
every answer is strict JSON.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import zmq

from .. import protocol as P
from .. import sockutil, strictjson
from ..errors import ProtocolError, Unauthorized
from ..security import CLIENTS
from .config import REPLY_PIPE_MESSAGES
from .front import Front, Origin

if TYPE_CHECKING:
    from .core import Broker
    from .state import Payload

log = logging.getLogger("engine.broker.compat")

FORMAT_OPS = {"jpeg", "png", "webp"}
MAX_JSON_BYTES = 96 * 1024 * 1024
MAX_TASK_CHARS = 4096  # the pipeline text
MAX_JSON_DEPTH = 32  # nesting of objects and arrays; a request needs 1
PUSH_PEER = ("push",)  # the PUSH socket's one backlog


class CompatError(ProtocolError, ValueError):
    """A request this socket cannot serve: ``code`` (``bad_message``, or ``unauthorized``) and its
    ``task_id`` when it could be read travel in the JSON answer."""

    def __init__(self, task_id: Any, message: str, *, code: str = ProtocolError.code) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.code = code


def _plain(token: str) -> bool:
    """A token JSON writes as itself (no escapes), so it can be looked for in the raw bytes."""
    return token.isascii() and token.isprintable() and '"' not in token and "\\" not in token and "/" not in token


def parse_request(raw: bytes, token: str = "") -> tuple[Any, str, bytes]:
    """(task_id, task, image bytes) from one JSON request, or CompatError saying what is wrong.

    With ``token`` set, the request must carry it as ``"token"`` (compared in constant time).
    """
    if len(raw) > MAX_JSON_BYTES:
        raise CompatError(None, f"request is {len(raw)} bytes; the limit is {MAX_JSON_BYTES}")
    if token and _plain(token) and f'"{token}"'.encode() not in raw:  # cheap: no token anywhere, no parse
        raise CompatError(None, "request needs the broker's shared \"token\" (broker flag --compat-token)",
                          code=Unauthorized.code)
    try:
        obj = strictjson.loads(raw, max_depth=MAX_JSON_DEPTH)
    except strictjson.BadJSON as exc:
        raise CompatError(None, f"request is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CompatError(None, 'request must be a JSON object {"task_id", "task", "image"}')
    task_id = obj.get("task_id")
    if not _valid_task_id(task_id):
        raise CompatError(None, f"request needs a \"task_id\": a string of 1 to {P.MAX_TASK_ID_CHARS} "
                                "characters or a number")
    if token and not hmac.compare_digest(str(obj.get("token", "")).encode(), token.encode()):
        raise CompatError(task_id, "request needs the broker's shared \"token\" (broker flag --compat-token)",
                          code=Unauthorized.code)
    task = obj.get("task")
    if not isinstance(task, str) or not task.strip():
        raise CompatError(task_id, "request needs a \"task\" naming the operation, e.g. \"grayscale\" or \"edge\"")
    if len(task) > MAX_TASK_CHARS:
        raise CompatError(task_id, f"\"task\" has {len(task)} characters; the limit is {MAX_TASK_CHARS}")
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


def _valid_task_id(task_id: Any) -> bool:
    if isinstance(task_id, bool):
        return False
    if isinstance(task_id, str):
        return 0 < len(task_id) <= P.MAX_TASK_ID_CHARS
    if isinstance(task_id, int):
        return abs(task_id) < 2**63
    return isinstance(task_id, float) and math.isfinite(task_id)


def pipeline_for(task: str) -> str:
    """The older tasks answered in JPEG: add a JPEG step unless the task names a format."""
    names = {step.split(":", 1)[0].strip() for step in task.split("|")}
    return task if names & FORMAT_OPS else f"{task}|jpeg"


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, allow_nan=False).encode()


def reply_json(task_id: Any, task: str, image: bytes) -> bytes:
    return _dumps({"task_id": task_id, "task": task, "image": base64.b64encode(image).decode("ascii")})


def error_json(task_id: Any, code: str, message: str) -> bytes:
    return _dumps({"task_id": task_id if _valid_task_id(task_id) else None, "error": message, "code": code})


class CompatFront(Front):
    """Both compat sockets' requests and replies. An origin's route says which socket:
    ``PUSH_PEER`` for the PULL/PUSH pair, the ROUTER envelope otherwise."""

    name = "compat"

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.stats, broker.unread_limits)
        self.broker = broker
        config = broker.config
        self.token = config.compat_token
        ctx, curve = broker.ctx, broker.curve
        def bound(kind: int, endpoint: str, name: str) -> zmq.Socket:
            return sockutil.bind(ctx, kind, endpoint, name=name, curve=curve, role=CLIENTS,
                                 max_message_bytes=config.max_message_bytes, sndhwm=REPLY_PIPE_MESSAGES)
        self.pull = bound(zmq.PULL, config.compat_pull, "compat PULL")
        self.push = bound(zmq.PUSH, config.compat_push, "compat PUSH")
        self.router = bound(zmq.ROUTER, config.compat_router, "compat ROUTER")
        self._seq = 0
        log.info("compat JSON sockets: PULL %s, PUSH %s, ROUTER %s", config.compat_pull,
                 config.compat_push, config.compat_router)

    def register(self, poller: zmq.Poller) -> None:
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)

    def close(self) -> None:
        for sock in (self.pull, self.push, self.router):
            sock.close(linger=0)

    def handle(self, events: dict, now_s: float) -> None:
        if self.pull in events:
            sockutil.drain(self.pull, self._on_pull, self.stats, log, name="compat PULL", batch=256)
        if self.router in events:
            sockutil.drain(self.router, self._on_router, self.stats, log, name="compat ROUTER", batch=256)
        self._flush(now_s)

    def _socket_for(self, peer) -> zmq.Socket:
        return self.push if peer == PUSH_PEER else self.router

    def _on_pull(self, frames: list) -> None:
        self._on_request(PUSH_PEER, frames[-1])

    def _on_router(self, frames: list) -> None:
        # ROUTER: routing id (+ REQ's empty delimiter), then the JSON
        self._on_request(tuple(f.bytes for f in frames[:-1]), frames[-1])

    def _identity(self, frame: zmq.Frame) -> str:
        """Its key's name with CURVE ("" once revoked: refused), else one shared name per socket."""
        curve = self.broker.curve
        return (curve.identity(frame, CLIENTS) or "") if curve is not None else self.name

    def _on_request(self, route: tuple, frame: zmq.Frame) -> None:
        origin = Origin(self, route, client=self._identity(frame))
        try:
            if self.broker.curve is not None and not origin.client:
                raise CompatError(None, "this client's key has been revoked from the broker's allow-list",
                                  code=Unauthorized.code)
            task_id, task, data = parse_request(frame.bytes, self.token)
        except CompatError as exc:
            self._send(route, error_json(exc.task_id, exc.code, str(exc)))
            return
        self._seq += 1
        origin = Origin(self, route, extra=(task_id, task), client=origin.client)
        request = P.Request(task_id=f"compat-{self._seq}", pipeline=pipeline_for(task))
        self.broker.submit(origin, request, data)

    def reply(self, origin: Origin, task_id: str, meta: dict, payload: Payload) -> None:
        compat_id, task = origin.extra
        data = payload.bytes if isinstance(payload, zmq.Frame) else bytes(payload)
        self._send(origin.route, reply_json(compat_id, task, data))

    def reply_error(self, origin: Origin, task_id: str | None, code: str, message: str,
                    meta: dict | None = None) -> None:
        self._send(origin.route, error_json(origin.extra[0] if origin.extra else None, code, message))

    def _send(self, route: tuple, body: bytes) -> None:
        if route == PUSH_PEER:
            self._deliver(self.push, PUSH_PEER, [body])
        else:
            self._deliver(self.router, route, [*route, body])
