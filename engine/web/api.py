"""HTTP API under /api/v1: images, batches and history. Described in ``openapi.py``.

Authentication: ``Authorization: Bearer <API token>``, or the browser's session cookie
plus an ``X-CSRF-Token`` header on POST and DELETE. Errors: ``{"error", "code"}``.
"""
from __future__ import annotations

import asyncio
import io
import json
import zipfile

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import errors as E
from .. import tracing
from ..errors import ImageError
from ..ops.codec import sniff
from .common import MEDIA_TYPES, batch_json, job_json, output_name, parts, read_form, require_user
from .jobs import Upload
from .names import content_disposition
from .problems import WebError

MAX_PAGE = 200
MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
FORM_TYPES = (MULTIPART, URLENCODED)


def require_writer(request: Request) -> dict:
    """The user, for a request that changes something: cookie sessions need the CSRF header."""
    user = require_user(request)
    if not parts(request).auth.csrf_ok(request, None):
        raise WebError(403, E.CSRF, "Missing or wrong X-CSRF-Token header (use the token in the page, "
                                    "or authenticate with an API token).")
    return user


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise WebError(400, E.BAD_QUERY, f"{name} must be an integer from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise WebError(400, E.BAD_QUERY, f"{name} must be an integer from {lo} to {hi}")
    return value


def _own_job(request: Request, user: dict) -> dict:
    job = parts(request).store.job(user["id"], request.path_params["job_id"])
    if job is None:
        raise WebError(404, E.NOT_FOUND, "No such job in your history.")
    return job


def _own_batch(request: Request, user: dict) -> tuple[dict, list[dict]]:
    p = parts(request)
    batch = p.store.batch(user["id"], request.path_params["batch_id"])
    if batch is None:
        raise WebError(404, E.NOT_FOUND, "No such batch in your history.")
    return batch, p.store.batch_jobs(user["id"], batch["id"])


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def process(request: Request) -> Response:
    """One image, synchronously: a multipart form, or the image's bytes as the body whatever
    type it is declared as (``curl --data-binary`` declares an urlencoded form)."""
    user = require_writer(request)
    p = parts(request)
    pipeline = request.query_params.get("pipeline")
    if _content_type(request) == MULTIPART:
        fields, uploads = await read_form(request, max_files=1)
        pipeline = fields.get("pipeline", pipeline)
        upload = uploads[0] if uploads else Upload("image", b"")
    else:
        # Read only up to max_upload_bytes: limits.BodyLimit refuses the rest while it streams in.
        upload = Upload(request.query_params.get("name", "image"), await request.body())
        if _content_type(request) == URLENCODED and upload.data and sniff(upload.data) is None:
            raise ImageError("the body is neither an image nor a multipart form: send the image's bytes as the "
                             "body (curl --data-binary @in.jpg) or a multipart form with an 'image' file "
                             "(curl -F image=@in.jpg -F pipeline=grayscale)")
    if pipeline is None:
        raise WebError(400, E.NO_PIPELINE, "Give a pipeline, e.g. ?pipeline=grayscale|png")
    if not upload.data:
        raise WebError(400, E.NO_IMAGE, "No image was sent: put it in the body or in a form field 'image'.")
    # W3C trace context: the trace id of a traceparent header follows the task through the engine.
    trace = tracing.from_traceparent(request.headers.get("traceparent"))
    if _keep(request):
        job, output = await p.jobs.process_now(user["id"], pipeline, upload, trace=trace)
        meta, headers = job["meta"], {"X-Job-Id": job["id"],
                                      "Content-Disposition": content_disposition("inline", output_name(job))}
    else:
        meta, output = await p.jobs.process_unkept(pipeline, upload, trace=trace)
        headers = {"Content-Disposition": "inline"}
    headers["X-Engine-Meta"] = json.dumps(meta, separators=(",", ":"))
    return Response(output, media_type=MEDIA_TYPES.get(meta.get("format"), "application/octet-stream"),
                    headers=headers)


def _keep(request: Request) -> bool:
    """``?history=false``: keep nothing of this request (default: it is a job in the history)."""
    raw = request.query_params.get("history", "true").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise WebError(400, E.BAD_QUERY, "history must be true or false")
    return raw in ("true", "1", "yes")


async def submit_batch(request: Request) -> Response:
    user = require_writer(request)
    p = parts(request)
    if _content_type(request) not in FORM_TYPES:
        raise WebError(415, E.BAD_FORM, "Send a multipart/form-data body with 'pipeline' and 'images' files.")
    fields, uploads = await read_form(request, max_files=p.settings.max_batch_files)
    if "pipeline" not in fields:
        raise WebError(400, E.NO_PIPELINE, "The form has no 'pipeline' field.")
    batch_id = await p.jobs.submit_batch(user["id"], fields["pipeline"], uploads)
    batch, jobs = p.store.batch(user["id"], batch_id), p.store.batch_jobs(user["id"], batch_id)
    return JSONResponse(batch_json(batch, jobs, p.schema), status_code=202)  # type: ignore[arg-type]


async def get_batch(request: Request) -> Response:
    batch, jobs = _own_batch(request, require_user(request))
    return JSONResponse(batch_json(batch, jobs, parts(request).schema))


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # images are compressed already
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


async def batch_zip(request: Request) -> Response:
    return await zip_response(request, require_user(request))


async def zip_response(request: Request, user: dict) -> Response:
    """The batch's finished results as a zip (the API's and the batch page's download)."""
    batch, jobs = _own_batch(request, user)
    blobs = parts(request).blobs
    done = [j for j in jobs if j["status"] == "done"]
    if not done:
        raise WebError(409, E.NOT_READY, "No image of this batch has finished yet.")
    entries = [(output_name(j), await asyncio.to_thread(blobs.get, j["output_sha"])) for j in done]
    data = await asyncio.to_thread(_zip, entries)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": content_disposition("attachment", f"batch-{batch['id']}.zip")})


async def list_jobs(request: Request) -> Response:
    user = require_user(request)
    p = parts(request)
    store = p.store
    limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    jobs = store.jobs(user["id"], limit=limit, offset=offset)
    return JSONResponse({"jobs": [job_json(j, p.schema) for j in jobs], "total": store.count_jobs(user["id"]),
                         "limit": limit, "offset": offset})


async def get_job(request: Request) -> Response:
    return JSONResponse(job_json(_own_job(request, require_user(request)), parts(request).schema))


async def delete_job(request: Request) -> Response:
    user = require_writer(request)
    if not await parts(request).jobs.delete(user["id"], request.path_params["job_id"]):
        raise WebError(404, E.NOT_FOUND, "No such job in your history.")
    return Response(status_code=204)


async def rerun_job(request: Request) -> Response:
    user = require_writer(request)
    p = parts(request)
    batch_id = await p.jobs.rerun(user["id"], request.path_params["job_id"])
    batch, jobs = p.store.batch(user["id"], batch_id), p.store.batch_jobs(user["id"], batch_id)
    return JSONResponse(batch_json(batch, jobs, p.schema), status_code=202)  # type: ignore[arg-type]


async def job_image(request: Request) -> Response:
    job = _own_job(request, require_user(request))
    which = request.path_params["which"]
    sha = {"input": job["input_sha"], "output": job["output_sha"], "thumbnail": job.get("thumb_sha")}.get(which)
    if sha is None:
        raise WebError(404, E.NOT_FOUND, f"This job has no {which} image" +
                       (f" (it is {job['status']})." if which != "input" else "."))
    data = await asyncio.to_thread(parts(request).blobs.get, sha)
    if which == "output":
        media = MEDIA_TYPES.get(job["meta"].get("format"), "application/octet-stream")
        disposition = content_disposition("attachment", output_name(job)) if "download" in request.query_params \
            else "inline"
    else:
        media = MEDIA_TYPES.get(sniff(data) or "", "application/octet-stream") if which == "input" \
            else "image/jpeg"
        disposition = "inline"
    return Response(data, media_type=media, headers={
        "Content-Disposition": disposition, "Cache-Control": "private, max-age=86400",
        "X-Content-Type-Options": "nosniff"})


routes = [
    Route("/api/v1/process", process, methods=["POST"]),
    Route("/api/v1/batches", submit_batch, methods=["POST"]),
    Route("/api/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/api/v1/batches/{batch_id}/zip", batch_zip, methods=["GET"]),
    Route("/api/v1/jobs", list_jobs, methods=["GET"]),
    Route("/api/v1/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/api/v1/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/api/v1/jobs/{job_id}/rerun", rerun_job, methods=["POST"]),
    Route("/api/v1/jobs/{job_id}/{which:str}", job_image, methods=["GET"]),
]
