"""Strict JSON answers for the web gateway: no NaN or Infinity, lone surrogates escaped on
the way out. Requests are read by the bounded decoder, ``engine.strictjson``."""
from __future__ import annotations

import json

from starlette.responses import JSONResponse


class StrictJSONResponse(JSONResponse):
    """ASCII JSON: lone surrogates from the request become \\u escapes instead of a crash,
    and a non-finite number is an error here rather than invalid JSON on the wire."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
