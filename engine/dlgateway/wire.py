"""The older deep-learning client's wire format, and nothing else.

Request: one JSON frame ``{"payload": "<base64 of the image file>", "_rid": "<request id>"}``
from a DEALER whose routing id is the request id (no empty delimiter frame).
Reply: one JSON frame ``{"_rid", "preds": "label : score, label : score, label : score",
"model", "faces", "person_fraction"}``; a request that cannot be served gets
``{"_rid", "error": "<what to do>", "code": "<stable code from engine.errors>"}``.

A frame over ``LARGE_BYTES`` must be exactly that object, the two keys in either order,
no other keys, and a payload with no escapes (no JSON writer escapes a base64 character):
``parse_large`` checks its head and tail and decodes the payload ``STEP_BYTES`` at a time,
so a caller can serve others between the steps.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .. import strictjson
from ..errors import ProtocolError

MAX_REQUEST_BYTES = 32 * 1024 * 1024  # one JSON frame: base64 of a ~24 MB image
MAX_RID_CHARS = 256
MAX_JSON_DEPTH = 8  # a request needs 1
LARGE_BYTES = 1 << 20  # frames over this are read by parse_large, in steps
STEP_BYTES = 1 << 20  # base64 decoded per step of parse_large (~1 ms); a multiple of 4
TOP_K = 3
MODEL_NAME = "mediapipe-blazeface-full-range+selfie-segmentation"

# What the engine runs for each request: a bounded copy (the planner decodes big JPEGs
# scaled), face detection and the person mask, metadata only.
PIPELINE = "resize:width=1280,height=1280,upscale=false|faces:draw=false|background:mode=mask|json"


class RequestError(ProtocolError):
    """A request frame the gateway cannot serve; ``rid`` is its id when it could be read."""

    def __init__(self, rid: str | None, message: str, *, code: str = ProtocolError.code) -> None:
        super().__init__(message)
        self.rid = rid
        self.code = code


@dataclass(frozen=True)
class Request:
    rid: str
    image: bytes | bytearray


def _check_size(raw: bytes | memoryview, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        raise RequestError(None, f"request is {len(raw)} bytes; the limit is {max_bytes}: send a smaller image")


def _rid(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_RID_CHARS:
        raise RequestError(None, f'request needs "_rid": a string of 1 to {MAX_RID_CHARS} characters '
                                 "(the DEALER's routing id)")
    return value


def _bad_base64(rid: str) -> RequestError:
    return RequestError(rid, '"payload" is not valid base64 (standard alphabet, padded)')


def parse_request(raw: bytes | memoryview, *, max_bytes: int = MAX_REQUEST_BYTES) -> Request:
    """The request in one frame (any bytes-like: a frame over ``max_bytes`` is not copied),
    or RequestError saying what is wrong. Decodes in one go: meant for frames up to
    ``LARGE_BYTES`` (a few ms); larger ones go through ``parse_large``."""
    _check_size(raw, max_bytes)
    try:
        obj = strictjson.loads(bytes(raw), max_depth=MAX_JSON_DEPTH)
    except strictjson.BadJSON as exc:
        raise RequestError(None, f"request is not strict JSON ({exc}); send "
                                 '{"payload": "<base64 image>", "_rid": "<id>"}') from None
    if not isinstance(obj, dict):
        raise RequestError(None, 'request must be a JSON object {"payload": ..., "_rid": ...}')
    rid = _rid(obj.get("_rid"))
    payload = obj.get("payload")
    if not isinstance(payload, str) or not payload:
        raise RequestError(rid, 'request needs "payload": the image file as a base64 string')
    try:
        image = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_base64(rid) from None
    if not image:
        raise RequestError(rid, '"payload" decodes to no bytes: send the image file')
    return Request(rid, image)


# The large request's head and tail, JSON's own whitespace (bounded) between tokens.
_WS = rb"[ \t\n\r]{0,64}"
_RID_TOKEN = rb'(?P<rid>"(?:[^"\\]|\\.){0,%d}")' % (6 * MAX_RID_CHARS)  # each character at most \uXXXX
_HEAD = re.compile(_WS + rb"\{" + _WS + rb'(?:"_rid"' + _WS + b":" + _WS + _RID_TOKEN + _WS + b"," + _WS
                   + rb')?"payload"' + _WS + b":" + _WS + b'"')
_TAIL = re.compile(b'"' + _WS + rb'(?:,' + _WS + rb'"_rid"' + _WS + b":" + _WS + _RID_TOKEN + _WS + rb")?\}"
                   + _WS + rb"\Z")
_EDGE_BYTES = 2048  # head and tail are looked for within this many bytes of each end
_CANONICAL = (f'a request over {LARGE_BYTES} bytes must be exactly {{"payload": "<base64>", "_rid": "<id>"}} '
              "(either order, no other keys, no escapes in the payload)")


_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def _strict_base64(chunk) -> bytes:
    """``binascii.a2b_base64(chunk, strict_mode=True)``; Python 3.10 has no ``strict_mode``
    (a TypeError there), so it gets the same refusals by a check first: only the alphabet,
    whole quanta, padding only at the end."""
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(chunk, strict_mode=True)
    return checked_base64(chunk)


def checked_base64(chunk) -> bytes:
    """Strict base64 without ``strict_mode`` (Python 3.10): the check, then the plain decode."""
    if len(chunk) % 4 or not _BASE64.fullmatch(chunk):
        raise binascii.Error("not strict base64")
    return binascii.a2b_base64(chunk)


def parse_large(raw: bytes | memoryview, *, max_bytes: int = MAX_REQUEST_BYTES) -> Generator[None, None, Request]:
    """``parse_request`` for a large frame, in steps: a generator that yields after reading
    at most ``STEP_BYTES`` of the payload and returns the Request (or raises RequestError).
    Accepts the same requests as ``parse_request`` that are in the canonical shape; the
    frame is never copied whole (any bytes-like, e.g. a ZeroMQ frame's buffer)."""
    _check_size(raw, max_bytes)
    head = _HEAD.match(raw, 0, _EDGE_BYTES)
    tail = _TAIL.search(raw, max(head.end() if head else 0, len(raw) - _EDGE_BYTES)) if head else None
    if head is None or tail is None:
        raise RequestError(None, _CANONICAL)
    tokens = [m["rid"] for m in (head, tail) if m["rid"] is not None]
    if len(tokens) > 1:
        raise RequestError(None, _CANONICAL)
    try:
        rid = _rid(json.loads(tokens[0]) if tokens else None)
    except ValueError:
        raise RequestError(None, '"_rid" is not a valid JSON string') from None
    start, end = head.end(), tail.start()
    image = bytearray()  # grown a step at a time: no step copies or zeroes the whole image
    for at in range(start, end, STEP_BYTES):
        chunk = raw[at:min(end, at + STEP_BYTES)]
        try:
            if at + STEP_BYTES < end and chunk[-1:] == b"=":  # padding before more data
                raise binascii.Error
            image += _strict_base64(chunk)
        except (binascii.Error, ValueError):
            if b"\\" in bytes(chunk):  # an escape: some writers send "/" as "\/"
                raise RequestError(rid, _CANONICAL) from None
            raise _bad_base64(rid) from None
        yield
    if not image:
        raise RequestError(rid, '"payload" decodes to no bytes: send the image file')
    return Request(rid, image)


def predictions(meta: dict) -> list[tuple[str, float]]:
    """The top TOP_K (label, score) from a reply's metadata: every face by its detection
    score, a person by the mean mask probability over the person's pixels, and always
    ``background`` by the share of pixels that are not person (so there is at least one)."""
    preds = [("face", float(f["score"])) for f in meta.get("faces", [])]
    if meta.get("person_fraction", 0.0) > 0:
        preds.append(("person", float(meta.get("person_score", 0.0))))
    preds.append(("background", 1.0 - float(meta.get("person_fraction", 0.0))))
    preds.sort(key=lambda p: -p[1])
    return preds[:TOP_K]


def format_preds(preds: list[tuple[str, float]]) -> str:
    return ", ".join(f"{label} : {score:.2f}" for label, score in preds)


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def reply_json(rid: str, meta: dict) -> bytes:
    return _dumps({"_rid": rid, "preds": format_preds(predictions(meta)), "model": MODEL_NAME,
                   "faces": meta.get("faces", []), "person_fraction": meta.get("person_fraction", 0.0)})


def error_json(rid: Any, code: str, message: str) -> bytes:
    return _dumps({"_rid": rid, "error": message, "code": code})
