"""Strict JSON for the web gateway: the bounded decoder (``engine.strictjson``) and answers
that are always strict: no NaN or Infinity, lone surrogates escaped on the way out."""
from __future__ import annotations

import json

from starlette.responses import JSONResponse

from ..strictjson import BadJSON, loads  # noqa: F401 - re-exported: the gateway's JSON reader


class StrictJSONResponse(JSONResponse):
    """ASCII JSON: lone surrogates from the request become \\u escapes instead of a crash,
    and a non-finite number is an error here rather than invalid JSON on the wire."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
