"""HTTP API under /api/v1: operations, live status, API tokens, the legacy JSON format,
and the OpenAPI description itself."""
from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import errors as E
from ..strictjson import BadJSON, loads
from .api import require_writer
from .common import parts, require_user
from .jobs import Upload
from .openapi import openapi_document
from .pages import render
from .problems import WebError, describe
from .strict_json import StrictJSONResponse


async def operations(request: Request) -> Response:
    """The operations the broker's workers offer, with their declared parameters (no login
    needed); this gateway's own registry, with ``source: "local"`` and a ``note``, when the
    broker cannot say."""
    return JSONResponse(await parts(request).schema.listing())


async def status(request: Request) -> Response:
    require_user(request)
    return JSONResponse(await parts(request).status.snapshot())


async def list_tokens(request: Request) -> Response:
    user = require_user(request)
    return JSONResponse({"tokens": parts(request).store.tokens(user["id"])})


async def create_token(request: Request) -> Response:
    user = require_writer(request)
    name = "token"
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = loads(await request.body() or b"{}", max_depth=parts(request).settings.max_json_depth)
        except BadJSON as exc:
            raise WebError(400, E.BAD_JSON, f"The body is not valid JSON: {exc}.") from None
        if not isinstance(body, dict) or not isinstance(body.get("name", ""), str):
            raise WebError(400, E.BAD_JSON, 'Send {"name": "<a label for the token>"}.')
        name = body.get("name") or name
    token_id, token = parts(request).auth.new_token(user["id"], name)
    return JSONResponse({"id": token_id, "name": name[:64], "token": token}, status_code=201)


async def revoke_token(request: Request) -> Response:
    user = require_writer(request)
    try:
        token_id = int(request.path_params["token_id"])
    except ValueError:
        token_id = -1
    if not parts(request).store.revoke_token(user["id"], token_id):
        raise WebError(404, E.NOT_FOUND, "No such active token.")
    return Response(status_code=204)


def _legacy_error(task_id: object, status: int, code: str, message: str) -> Response:
    return StrictJSONResponse({"task_id": task_id, "error": message, "code": code}, status_code=status)


async def legacy(request: Request) -> Response:
    """The older design's format: {"task_id", "task", "image"(base64)} in and out.

    Cheap checks first: credentials, then the size (``limits.BodyLimit`` refuses a body over
    ``max_legacy_body_bytes`` while it streams in), and only then strict, depth-bounded
    decoding. Every answer, errors included, is strict JSON."""
    p = parts(request)
    try:
        user = require_writer(request)
        body = loads(await request.body(), max_depth=p.settings.max_json_depth)
    except WebError as exc:
        return _legacy_error(None, exc.status, exc.code, exc.message)
    except BadJSON as exc:
        return _legacy_error(None, 400, E.BAD_JSON, str(exc))
    if not isinstance(body, dict):
        return _legacy_error(None, 400, E.BAD_JSON, 'send {"task_id", "task", "image"}')
    task_id, task, image = body.get("task_id"), body.get("task"), body.get("image")
    if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
        return _legacy_error(None, 400, E.BAD_JSON, "'task_id' must be a string or a number")
    if not isinstance(task, str) or not isinstance(image, str):
        return _legacy_error(task_id, 400, E.BAD_JSON, "'task' (the pipeline) and 'image' (base64) must be strings")
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        return _legacy_error(task_id, 400, E.BAD_BASE64, "'image' is not valid base64")
    if not data:
        return _legacy_error(task_id, 400, E.NO_IMAGE, "'image' is empty")
    try:
        _job, output = await p.jobs.process_now(user["id"], task, Upload(f"legacy-{task_id}", data))
    except Exception as exc:
        status_code, code, message = describe(exc, broker=p.settings.broker)
        return _legacy_error(task_id, status_code, code, message)
    return StrictJSONResponse({"task_id": task_id, "task": task, "image": base64.b64encode(output).decode()})


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def docs(request: Request) -> Response:
    """Interactive docs built from the OpenAPI description (static/apidocs.js); no login needed
    to read them, the requests they send authenticate like any other."""
    return render(request, "apidocs.html")


routes = [
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    Route("/api/v1/docs", docs, methods=["GET"]),
    Route("/api/v1/operations", operations, methods=["GET"]),
    Route("/api/v1/status", status, methods=["GET"]),
    Route("/api/v1/tokens", list_tokens, methods=["GET"]),
    Route("/api/v1/tokens", create_token, methods=["POST"]),
    Route("/api/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
    Route("/api/v1/legacy", legacy, methods=["POST"]),
]
