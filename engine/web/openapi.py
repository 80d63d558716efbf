"""The OpenAPI 3.0 description of /api/v1, served at /api/v1/openapi.json."""
from __future__ import annotations

from .. import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_ID = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    text = {400: "bad request", 401: "not logged in / no token", 403: "CSRF header missing",
            404: "not yours, or does not exist", 409: "nothing finished yet", 413: "too large",
            415: "not an image / wrong content type", 422: "invalid pipeline", 429: "over your quota",
            502: "the engine failed the task", 503: "the engine is unreachable or busy",
            504: "the engine did not answer in time"}
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


def _path_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _query_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_PIPELINE = {"type": "string", "minLength": 1, "maxLength": 4096,
             "description": "pipeline text, e.g. grayscale|edge:low=50|png (see GET /api/v1/operations)",
             "example": "grayscale|png"}
_ENGINE_ERRORS = (400, 401, 403, 413, 415, 422, 429, 502, 503, 504)


def openapi_document() -> dict:
    image_response = {"description": "the processed image; X-Engine-Meta has its metadata as JSON "
                                     "(schema EngineMeta: detections in 'faces'); with the 'json' output "
                                     "step the body is that metadata as JSON instead of an image",
                      "headers": {"X-Job-Id": {"schema": {"type": "string"}},
                                  "X-Engine-Meta": {"schema": {"type": "string"}}},
                      "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _IMAGE_TYPES}}
    binary = {"type": "string", "format": "binary"}
    job_path = [_path_param("job_id", _ID, "a job's id (16 hex digits), as in X-Job-Id or GET /api/v1/jobs")]
    batch_path = [_path_param("batch_id", _ID, "a batch's id (16 hex digits), as POST /api/v1/batches answered")]
    paths = {
        "/api/v1/operations": {"get": {
            "summary": "List the operations the connected workers offer, with their declared parameters",
            "security": [],
            "responses": {"200": _json({"type": "object", "required": ["operations", "source"], "properties": {
                "operations": {"type": "object", "description": "declarations by operation name"},
                "source": {"type": "string", "enum": ["workers", "local"],
                           "description": "workers: what the broker's connected workers declared (pipelines "
                                          "are checked against it); local: the gateway's own operations, "
                                          "when the broker cannot say (see note)"},
                "note": {"type": "string", "description": "with source local: why the broker could not say"}}},
                "operations by name")}}},
        "/api/v1/process": {"post": {
            "summary": "Process one image and wait for the result",
            "parameters": [_query_param("pipeline", _PIPELINE,
                                        "the pipeline, when the body is the raw image (with multipart/form-data "
                                        "it is a form field instead)"),
                           _query_param("name", {"type": "string", "maxLength": 200},
                                        "the input's file name, shown in your history (default: image)"),
                           _query_param("history", {"type": "boolean", "default": True},
                                        "false: keep nothing of this request (no job in the history, no "
                                        "stored input, result or thumbnail, no X-Job-Id); the fastest path")],
            "requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": binary},
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["image", "pipeline"],
                    "properties": {"image": binary, "pipeline": _PIPELINE}}}}},
            "responses": {"200": image_response, **_errors(*_ENGINE_ERRORS)}}},
        "/api/v1/batches": {"post": {
            "summary": "Submit a batch of images; follow it with GET /api/v1/batches/{batch_id}",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["images", "pipeline"],
                "properties": {"images": {"type": "array", "items": binary,
                                          "description": "the image files, one job each"},
                               "pipeline": _PIPELINE}}}}},
            "responses": {"202": _json({"$ref": "#/components/schemas/Batch"}, "accepted"),
                          **_errors(400, 401, 403, 413, 415, 422, 429, 503)}}},
        "/api/v1/batches/{batch_id}": {"get": {
            "summary": "A batch's progress and its jobs", "parameters": batch_path,
            "responses": {"200": _json({"$ref": "#/components/schemas/Batch"}, "the batch"),
                          **_errors(401, 404)}}},
        "/api/v1/batches/{batch_id}/zip": {"get": {
            "summary": "The finished results of a batch as a zip", "parameters": batch_path,
            "responses": {"200": {"description": "zip", "content": {"application/zip": {"schema": binary}}},
                          **_errors(401, 404, 409)}}},
        "/api/v1/jobs": {"get": {
            "summary": "Your history, newest first",
            "parameters": [_query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                                        "at most this many jobs in the answer"),
                           _query_param("offset", {"type": "integer", "minimum": 0, "default": 0},
                                        "skip this many of the newest jobs first (the next page: offset + limit)")],
            "responses": {"200": _json({"type": "object", "required": ["jobs", "total"], "properties": {
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "total": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"}}},
                "a page of jobs"), **_errors(400, 401)}}},
        "/api/v1/jobs/{job_id}": {
            "get": {"summary": "One job", "parameters": job_path,
                    "responses": {"200": _json({"$ref": "#/components/schemas/Job"}, "the job"),
                                  **_errors(401, 404)}},
            "delete": {"summary": "Delete a job and, if no other job uses them, its images",
                       "parameters": job_path,
                       "responses": {"204": {"description": "deleted"}, **_errors(401, 403, 404)}}},
        "/api/v1/jobs/{job_id}/rerun": {"post": {
            "summary": "Run a job's input and pipeline again, as a new batch", "parameters": job_path,
            "responses": {"202": _json({"$ref": "#/components/schemas/Batch"}, "accepted"),
                          **_errors(401, 403, 404, 413, 422, 429, 503)}}},
        "/api/v1/status": {"get": {
            "summary": "Workers, queue depth and throughput, live from the broker",
            "responses": {"200": _json({"type": "object", "required": ["up"],
                                        "properties": {"up": {"type": "boolean"}}}, "status"),
                          **_errors(401)}}},
        "/api/v1/tokens": {
            "get": {"summary": "Your API tokens (never their secrets)",
                    "responses": {"200": _json({"type": "object"}, "tokens"), **_errors(401)}},
            "post": {"summary": "Create an API token; the secret is shown only in this answer",
                     "requestBody": {"required": False, "content": {"application/json": {"schema": {
                         "type": "object", "properties": {"name": {"type": "string", "maxLength": 64}}}}}},
                     "responses": {"201": _json({"type": "object", "required": ["id", "token"]}, "created"),
                                   **_errors(400, 401, 403)}}},
        "/api/v1/tokens/{token_id}": {"delete": {
            "summary": "Revoke a token", "parameters": [_path_param(
                "token_id", {"type": "integer"}, "the token's id, as GET /api/v1/tokens lists it (not its secret)")],
            "responses": {"204": {"description": "revoked"}, **_errors(401, 403, 404)}}},
        "/api/v1/legacy": {"post": {
            "summary": 'The older JSON format: {"task_id", "task": pipeline, "image": base64}',
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["task_id", "task", "image"],
                "properties": {"task_id": {"type": "string"}, "task": _PIPELINE,
                               "image": {"type": "string", "format": "byte"}}}}}},
            "responses": {"200": _json({"type": "object", "required": ["task_id", "task", "image"]}, "result"),
                          **{str(s): _json({"type": "object", "required": ["error"]}, "error")
                             for s in _ENGINE_ERRORS}}}},
    }
    job = {"type": "object", "required": ["id", "status", "pipeline"], "properties": {
        "id": {"type": "string"}, "batch_id": {"type": "string", "nullable": True},
        "pipeline": {"type": "string"}, "input_name": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "done", "failed"]},
        "error": {"type": "object", "nullable": True}, "meta": {"$ref": "#/components/schemas/EngineMeta"},
        "input_bytes": {"type": "integer"}, "output_bytes": {"type": "integer"},
        "created_at": {"type": "number"}, "finished_at": {"type": "number", "nullable": True},
        "urls": {"type": "object"}}}
    batch = {"type": "object", "required": ["id", "total", "done", "failed", "finished", "jobs"], "properties": {
        "id": {"type": "string"}, "pipeline": {"type": "string"}, "total": {"type": "integer"},
        "queued": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"},
        "finished": {"type": "boolean"}, "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}
    point = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
             "description": "[x, y] in pixels"}
    detection = {"type": "object", "required": ["box", "score", "keypoints"], "properties": {
        "box": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
                "description": "[x, y, width, height] in integer pixels of the image as it was at the detecting "
                               "step (put geometry changes before it for boxes that match the output)"},
        "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "detection confidence"},
        "keypoints": {"type": "array", "items": point, "maxItems": 6,
                      "description": "6 points: right eye, left eye, nose tip, mouth centre, right ear tragion, "
                                     "left ear tragion (the faces_haar fallback gives none, and score 1.0)"}}}
    engine_meta = {"type": "object", "description": "what the worker says about a result; operations add keys",
                   "properties": {
                       "format": {"type": "string", "description": "jpeg, png, webp, or json (metadata only)"},
                       "width": {"type": "integer"}, "height": {"type": "integer"},
                       "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Detection"},
                                 "description": "faces / anonymize: detections, best first"},
                       "faces_model": {"type": "string", "enum": ["full", "short", "haar"]},
                       "anonymized": {"type": "integer", "description": "anonymize: faces hidden"},
                       "person_fraction": {"type": "number", "description": "background: share of person pixels"},
                       "person_score": {"type": "number",
                                        "description": "background: mean person probability over them"}}}
    error = {"type": "object", "required": ["error", "code"],
             "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "zmq-image-engine web gateway", "version": __version__,
                 "description": "Process images, follow batches and read your history over HTTP."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": {"Job": job, "Batch": batch, "Error": error, "Detection": detection,
                        "EngineMeta": engine_meta},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token from /tokens"},
                "session": {"type": "apiKey", "in": "cookie", "name": "engine_session",
                            "description": "the browser session; POST and DELETE also need X-CSRF-Token"}}},
    }
