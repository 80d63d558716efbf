"""The older deep-learning client's wire format, and nothing else.

Request: one JSON frame ``{"payload": "<base64 of the image file>", "_rid": "<request id>"}``
from a DEALER whose routing id is the request id (no empty delimiter frame).
Reply: one JSON frame ``{"_rid", "preds": "label : score, label : score, label : score",
"model", "faces", "person_fraction"}``; a request that cannot be served gets
``{"_rid", "error": "<what to do>", "code": "<stable code from engine.errors>"}``.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .. import strictjson
from ..errors import ProtocolError

MAX_REQUEST_BYTES = 32 * 1024 * 1024  # one JSON frame: base64 of a ~24 MB image
MAX_RID_CHARS = 256
MAX_JSON_DEPTH = 8  # a request needs 1
TOP_K = 3
MODEL_NAME = "mediapipe-blazeface-full-range+selfie-segmentation"

# What the engine runs for each request: a bounded copy (the planner decodes big JPEGs
# scaled), face detection and the person mask, metadata only.
PIPELINE = "resize:width=1280,height=1280,upscale=false|faces:draw=false|background:mode=mask|json"


class RequestError(Exception):
    """A request frame the gateway cannot serve; ``rid`` is its id when it could be read."""

    def __init__(self, rid: str | None, message: str, *, code: str = ProtocolError.code) -> None:
        super().__init__(message)
        self.rid = rid
        self.code = code


@dataclass(frozen=True)
class Request:
    rid: str
    image: bytes


def parse_request(raw: bytes, *, max_bytes: int = MAX_REQUEST_BYTES) -> Request:
    """The request in one frame, or RequestError saying what is wrong."""
    if len(raw) > max_bytes:
        raise RequestError(None, f"request is {len(raw)} bytes; the limit is {max_bytes}: send a smaller image")
    try:
        obj = strictjson.loads(raw, max_depth=MAX_JSON_DEPTH)
    except strictjson.BadJSON as exc:
        raise RequestError(None, f"request is not strict JSON ({exc}); send "
                                 '{"payload": "<base64 image>", "_rid": "<id>"}') from None
    if not isinstance(obj, dict):
        raise RequestError(None, 'request must be a JSON object {"payload": ..., "_rid": ...}')
    rid = obj.get("_rid")
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_RID_CHARS:
        raise RequestError(None, f'request needs "_rid": a string of 1 to {MAX_RID_CHARS} characters '
                                 "(the DEALER's routing id)")
    payload = obj.get("payload")
    if not isinstance(payload, str) or not payload:
        raise RequestError(rid, 'request needs "payload": the image file as a base64 string')
    try:
        image = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(rid, '"payload" is not valid base64 (standard alphabet, padded)') from None
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
