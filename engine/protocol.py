"""The wire format, and nothing else. See docs/protocol.md for the prose version.

A message is a list of ZeroMQ frames: one msgpack header frame, then raw payload
frames (image bytes). Header keys are short but readable; ``v`` is the protocol
version and ``t`` the message type. Payloads are never inside the header, so an image
crosses the broker as the same zmq.Frame it arrived in (send with ``copy=False``:
pyzmq copies frames under ``zmq.COPY_THRESHOLD`` (64 KiB) anyway, and passes larger
ones by reference).

Every received message goes through ``decode``, which checks frame count, header size,
version, type and field types before anything else looks at it, and raises
``ProtocolError`` (carrying the bad data) instead of asserting.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import zmq

from .errors import ProtocolError, VersionError

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_TASK_ID_CHARS = 128
# The largest image a client sends and a worker decodes, by default (each may be configured lower
# or higher: the client's ``max_input_bytes``, the worker's --max-input-mb).
MAX_INPUT_BYTES = 64 * 1024 * 1024

# Heartbeats, the one contract every role shares. The broker's own values are announced in each
# heartbeat it sends (``Heartbeat.interval_s``/``liveness``) and its peers follow them; these
# defaults are what a peer uses until the broker has spoken (or when an older broker never says).
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_LIVENESS = 3  # intervals of silence before a peer counts as dead
MAX_HEARTBEAT_INTERVAL_S = 3600.0  # an announced interval beyond this (or not above 0) is ignored
MAX_HEARTBEAT_LIVENESS = 1000

# Message types (header key "t").
READY = 1  # worker -> broker: I can take `capacity` more tasks
REQUEST = 2  # client -> broker -> worker: process payload[0] with `pipeline`
REPLY = 3  # worker -> broker -> client: payload[0] is the result
ERROR = 4  # anyone -> requester: the task (or message) failed, with a stable code
HEARTBEAT = 5  # both ways, broker <-> worker and broker <-> client
DISCONNECT = 6  # either side: I am going away (or: who are you? register again)
CANCEL = 7  # client -> broker -> worker: drop this task if you still can
INFO = 8  # client -> broker (request, empty data) and broker -> client (answer)

TYPE_NAMES = {
    READY: "READY", REQUEST: "REQUEST", REPLY: "REPLY", ERROR: "ERROR",
    HEARTBEAT: "HEARTBEAT", DISCONNECT: "DISCONNECT", CANCEL: "CANCEL", INFO: "INFO",
}


@dataclass(slots=True)
class Message:
    """Base of all messages: ``TYPE`` is the wire type, ``PAYLOADS`` how many raw frames follow."""

    TYPE: ClassVar[int] = 0
    PAYLOADS: ClassVar[int] = 0
    # field name -> (header key, accepted types, required)
    FIELDS: ClassVar[dict[str, tuple[str, tuple[type, ...], bool]]] = {}

    def header(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": self.TYPE}
        for name, (key, _types, required) in self.FIELDS.items():
            value = getattr(self, name)
            if value is not None or required:
                out[key] = value
        return out


@dataclass(slots=True)
class Ready(Message):
    TYPE: ClassVar[int] = READY
    FIELDS: ClassVar = {"capacity": ("cap", (int,), True), "ops": ("ops", (dict,), False),
                        "host": ("host", (str,), False), "pid": ("pid", (int,), False),
                        "processes": ("procs", (int,), False), "group": ("grp", (str,), False),
                        "control": ("ctl", (bool,), False), "shm": ("shm", (str,), False)}
    capacity: int
    ops: dict | None = None
    host: str | None = None
    pid: int | None = None
    processes: int | None = None  # informational: pool processes behind the slots
    group: str | None = None  # a pool process: the routing id of its host's control connection
    control: bool | None = None  # a worker host's supervisor: no slots, it speaks for the group's processes
    shm: str | None = None  # its proof that it reads the broker's shared-memory key (engine.shm.prove)


@dataclass(slots=True)
class Request(Message):
    TYPE: ClassVar[int] = REQUEST
    PAYLOADS: ClassVar[int] = 1
    FIELDS: ClassVar = {"task_id": ("id", (str,), True), "pipeline": ("pipeline", (str, list), True),
                        "options": ("opts", (dict,), False), "sent_s": ("sent", (float,), False),
                        "more": ("more", (bool,), False), "ref": ("ref", (bool,), False)}
    task_id: str
    pipeline: str | list
    options: dict | None = None
    sent_s: float | None = None  # broker -> worker: the broker's wall clock when it sent the task
    # broker -> worker: other tasks were waiting (a worker idle before this one waited on the link)
    more: bool | None = None
    ref: bool | None = None  # the payload is the name of a shared-memory segment holding the image (engine.shm)


@dataclass(slots=True)
class Reply(Message):
    TYPE: ClassVar[int] = REPLY
    PAYLOADS: ClassVar[int] = 1
    FIELDS: ClassVar = {"task_id": ("id", (str,), True), "meta": ("meta", (dict,), True)}
    task_id: str
    meta: dict = field(default_factory=dict)


@dataclass(slots=True)
class Error(Message):
    TYPE: ClassVar[int] = ERROR
    FIELDS: ClassVar = {"task_id": ("id", (str,), False), "code": ("code", (str,), True),
                        "message": ("msg", (str,), True), "meta": ("meta", (dict,), False),
                        "worker": ("wkr", (str,), False)}
    task_id: str | None
    code: str
    message: str
    meta: dict | None = None
    worker: str | None = None  # supervisor -> broker: the answer is for this pool process of its group


@dataclass(slots=True)
class Heartbeat(Message):
    TYPE: ClassVar[int] = HEARTBEAT
    FIELDS: ClassVar = {"sender": ("sid", (str,), False), "max_message_bytes": ("maxmsg", (int,), False),
                        "clock_s": ("clk", (float,), False), "shm": ("shm", (str,), False),
                        "interval_s": ("ivl", (float, int), False), "liveness": ("live", (int,), False),
                        "cpu_percent": ("cpu", (float, int), False), "mem_used_bytes": ("memu", (int,), False),
                        "mem_total_bytes": ("memt", (int,), False)}
    sender: str | None = None  # the sender's instance id (a broker restart changes it)
    max_message_bytes: int | None = None  # broker -> worker: the largest message it accepts (check results)
    clock_s: float | None = None  # broker -> worker: its wall clock, so a worker can age a task's ``sent_s``
    shm: str | None = None  # broker -> peer: its shared-memory key's name; peer -> broker: the proof it read it
    interval_s: float | None = None  # broker -> peer: its heartbeat interval, which the peer follows
    liveness: int | None = None  # broker -> peer: intervals of silence before either side counts the other dead
    # A worker host's supervisor -> broker, with its heartbeats (older workers send none): the host's CPU busy
    # over the last interval, all cores together (0-100), and its memory in use (total less available) and in all.
    cpu_percent: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None


@dataclass(slots=True)
class Disconnect(Message):
    TYPE: ClassVar[int] = DISCONNECT
    FIELDS: ClassVar = {"reason": ("reason", (str,), False), "drain": ("drain", (bool,), False),
                        "worker": ("wkr", (str,), False), "task_id": ("id", (str,), False)}
    reason: str | None = None
    drain: bool | None = None  # worker: "no new tasks; I finish those I hold, then disconnect"
    worker: str | None = None  # supervisor -> broker: this pool process of its group is gone
    task_id: str | None = None  # ... and this task (if any) was running in it: it alone counts an attempt


@dataclass(slots=True)
class Cancel(Message):
    TYPE: ClassVar[int] = CANCEL
    FIELDS: ClassVar = {"task_id": ("id", (str,), True)}
    task_id: str


@dataclass(slots=True)
class Info(Message):
    TYPE: ClassVar[int] = INFO
    FIELDS: ClassVar = {"data": ("data", (dict,), False)}
    data: dict | None = None


@dataclass(frozen=True, slots=True)
class Pace:
    """A peer's heartbeat timing: how often it beats, and how many silent intervals mean the
    broker is gone. It starts from the peer's own values and follows what the broker announces."""

    interval_s: float = HEARTBEAT_INTERVAL_S
    liveness: int = HEARTBEAT_LIVENESS

    @property
    def silence_s(self) -> float:
        """Seconds without a word from the other side before it counts as dead."""
        return self.interval_s * self.liveness

    def follow(self, msg: Heartbeat) -> Pace:
        """This pace with the broker's announced values where it gave sane ones (an older broker
        announces none: the peer keeps its own)."""
        interval_s, liveness = msg.interval_s, msg.liveness
        if interval_s is None or not 0 < interval_s <= MAX_HEARTBEAT_INTERVAL_S:
            interval_s = self.interval_s
        if liveness is None or not 0 < liveness <= MAX_HEARTBEAT_LIVENESS:
            liveness = self.liveness
        if interval_s == self.interval_s and liveness == self.liveness:
            return self
        return Pace(float(interval_s), liveness)


MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (Ready, Request, Reply, Error, Heartbeat, Disconnect, Cancel, Info)
}


def encode(msg: Message, *payloads: Any) -> list:
    """Frames for ``msg``: the packed header, then its payloads as given (bytes or zmq.Frame)."""
    if len(payloads) != msg.PAYLOADS:
        raise ValueError(f"{TYPE_NAMES[msg.TYPE]} takes {msg.PAYLOADS} payload frame(s), got {len(payloads)}")
    return [msgpack.packb(msg.header(), use_bin_type=True), *payloads]


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    return bytes(frame)


# Per message type: class, name, payload frames, and its fields as
# (attribute, header key, accepted types, required, bool accepted), computed once.
_SPECS: dict[int, tuple] = {
    t: (cls, TYPE_NAMES[t], cls.PAYLOADS,
        tuple((name, key, types, required, bool in types) for name, (key, types, required) in cls.FIELDS.items()))
    for t, cls in MESSAGE_CLASSES.items()
}


def decode(frames: Sequence[Any]) -> tuple[Message, list]:
    """Check and unpack a received message (identity frames already removed).

    Returns the message and its payload frames, untouched (zmq.Frame stays zmq.Frame).
    Raises ProtocolError (or VersionError) describing what is wrong. The header is read
    in place (no copy), each field checked once against the table above.
    """
    if not frames:
        raise ProtocolError("empty message: expected a header frame", data=[])
    first = frames[0]
    raw = first.buffer if isinstance(first, zmq.Frame) else first
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header frame is {len(raw)} bytes; the limit is {MAX_HEADER_BYTES}",
                            data=bytes(raw[:64]))
    try:
        head = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"header frame is not valid msgpack ({type(exc).__name__})",
                            data=bytes(raw[:64])) from exc
    if not isinstance(head, dict):
        raise ProtocolError("header must be a msgpack map", data=bytes(raw[:64]))
    version = head.get("v")
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise VersionError(f"protocol version {version!r} is not supported; this engine speaks "
                           f"version {PROTOCOL_VERSION}", data=bytes(raw[:64]))
    kind = head.get("t")
    spec = _SPECS.get(kind) if type(kind) is int else None
    if spec is None:
        raise ProtocolError(f"unknown message type {kind!r}; known: {sorted(MESSAGE_CLASSES)}",
                            data=bytes(raw[:64]))
    cls, name, payloads, fields = spec
    if len(frames) - 1 != payloads:
        raise ProtocolError(f"{name} must carry {payloads} payload frame(s), got {len(frames) - 1}",
                            data=bytes(raw[:64]))
    kwargs: dict[str, Any] = {}
    for attr, key, types, required, bool_ok in fields:
        value = head.get(key)
        if value is None:
            if required:
                raise ProtocolError(f"{name} header lacks the required field {key!r}", data=head)
        elif not isinstance(value, types) or (not bool_ok and value.__class__ is bool):
            want = " or ".join(t.__name__ for t in types)
            raise ProtocolError(f"{name} field {key!r} must be {want}, got {type(value).__name__}", data=head)
        kwargs[attr] = value
    task_id = kwargs.get("task_id")
    if task_id is not None and not 0 < len(task_id) <= MAX_TASK_ID_CHARS:
        raise ProtocolError(f"task id must have 1 to {MAX_TASK_ID_CHARS} characters", data=head)
    if cls is Ready and kwargs["capacity"] < 0:
        raise ProtocolError("READY capacity must not be negative", data=head)
    return cls(**kwargs), list(frames[1:])


def request_frames(task_id: str, pipeline: str | list, options: dict | None, payload: Any,
                   sent_s: float | None = None, more: bool = False, ref: bool = False) -> list:
    """``encode(Request(...), payload)`` for the broker's hot path: the same bytes, built directly."""
    head = {"v": PROTOCOL_VERSION, "t": REQUEST, "id": task_id, "pipeline": pipeline}
    if options is not None:
        head["opts"] = options
    if sent_s is not None:
        head["sent"] = sent_s
    if more:
        head["more"] = True
    if ref:
        head["ref"] = True
    return [msgpack.packb(head, use_bin_type=True), payload]


def reply_frames(task_id: str, meta: dict, payload: Any) -> list:
    """``encode(Reply(...), payload)`` for the broker's hot path: the same bytes, built directly."""
    return [msgpack.packb({"v": PROTOCOL_VERSION, "t": REPLY, "id": task_id, "meta": meta}, use_bin_type=True),
            payload]


def error_frames(task_id: str | None, code: str, message: str, meta: dict | None = None) -> list:
    """Frames of an ERROR reply (the common case, shared by broker and worker)."""
    return encode(Error(task_id=task_id, code=code, message=message, meta=meta))


def peek_task_id(frames: Sequence[Any]) -> str | None:
    """Best-effort task id from a message that failed ``decode``, so its ERROR can name it.

    Reads the header map key by key and skips every other value unbuilt, so a header over
    ``MAX_HEADER_BYTES`` (a huge pipeline) still names its task, at no cost in memory.
    """
    try:
        raw = _as_bytes(frames[0])
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(raw), 1))
        unpacker.feed(raw)
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "id":
                tid = unpacker.unpack()
                return tid if isinstance(tid, str) and len(tid) <= MAX_TASK_ID_CHARS else None
            unpacker.skip()
    except Exception:
        pass
    return None
