"""What the pages and the API share: the app's parts, reading uploads, job JSON."""
from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request

from .. import errors as E
from .auth import Auth
from .blobs import BlobStore
from .db import Store
from .jobs import Jobs, Upload
from .link import EngineLink
from .names import file_stem
from .problems import WebError
from .schema import WorkerSchema
from .settings import WebSettings
from .status import StatusMonitor

MEDIA_TYPES = {"json": "application/json", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
               "bmp": "image/bmp",
               "tiff": "image/tiff"}
EXTENSIONS = {"json": "json", "jpeg": "jpg", "png": "png", "webp": "webp", "bmp": "bmp", "tiff": "tif"}
MAX_FORM_FIELDS = 20


@dataclass
class Parts:
    """Everything a request handler needs, built once by the app's lifespan."""

    settings: WebSettings
    store: Store
    blobs: BlobStore
    auth: Auth
    link: EngineLink
    schema: WorkerSchema  # what the broker's workers offer
    jobs: Jobs
    status: StatusMonitor


def parts(request: Request) -> Parts:
    return request.app.state.parts


def require_user(request: Request) -> dict:
    user = parts(request).auth.user(request)
    if user is None:
        raise WebError(401, E.Unauthorized.code, "Log in, or send 'Authorization: Bearer <API token>'.")
    return user


async def read_form(request: Request, *, max_files: int) -> tuple[dict[str, str], list[Upload]]:
    """Text fields and uploaded files of a multipart or urlencoded form. The body's size is
    limited while it streams in (``limits.BodyLimit``: a ``WebError(413)``)."""
    settings = parts(request).settings
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS)
    except WebError:
        raise
    except Exception as exc:  # python-multipart and starlette raise several types
        status = getattr(exc, "status_code", 400)
        raise WebError(status if status in (400, 413) else 400, E.BAD_FORM,
                       f"the form could not be read: {getattr(exc, 'detail', exc)}") from None
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if value.size and value.size > settings.max_upload_bytes:
                raise WebError(413, E.ImageTooLarge.code, f"{value.filename} is {value.size / 2**20:.1f} MiB; "
                               f"the limit is {settings.max_upload_bytes / 2**20:.0f} MiB per image")
            data = await value.read()
            if data or value.filename:
                uploads.append(Upload(value.filename or "image", data))
        else:
            fields[key] = value
    await form.close()
    return fields, uploads


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def detections(meta: dict) -> list[dict]:
    """The boxes in a result's ``faces`` metadata, in pixels of the output image, as
    ``{"box": [x, y, w, h], "score": float | None, "keypoints": [[x, y], ...]}``. Accepts
    the Haar operation's ``[[x, y, w, h], ...]`` and the detectors' dicts; skips the rest."""
    out: list[dict] = []
    faces = meta.get("faces")
    for item in faces if isinstance(faces, list) else []:
        d = item if isinstance(item, dict) else {"box": item}
        box = d.get("box")
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(map(_number, box))):
            continue
        points = [p[:2] for p in d.get("keypoints") or [] if isinstance(p, (list, tuple)) and len(p) >= 2
                  and all(map(_number, p[:2]))]
        out.append({"box": list(box), "score": d.get("score") if _number(d.get("score")) else None,
                    "keypoints": points})
    return out


def job_json(job: dict, schema: WorkerSchema) -> dict:
    """A job as the API and the pages show it; ``canonical_pipeline`` by the workers' schema
    last seen (``WorkerSchema.canonical_or_none``)."""
    base = f"/api/v1/jobs/{job['id']}"
    done = job["status"] == "done"
    return {
        "id": job["id"], "batch_id": job["batch_id"], "pipeline": job["pipeline"],
        "canonical_pipeline": schema.canonical_or_none(job["pipeline"]),
        "cached": job["meta"].get("cache") == "hit", "detections": detections(job["meta"]),
        "can_rerun": job["error_code"] != E.ImageError.code,
        "input_name": job["input_name"], "status": job["status"],
        "error": {"code": job["error_code"], "message": job["error_message"]} if job["error_code"] else None,
        "created_at": job["created_at"], "finished_at": job["finished_at"],
        "input_bytes": job["input_bytes"], "output_bytes": job["output_bytes"], "meta": job["meta"],
        "urls": {"self": base, "input": f"{base}/input", "output": f"{base}/output" if done else None,
                 "thumbnail": f"{base}/thumbnail" if job.get("thumb_sha") else None,
                 "page": f"/jobs/{job['id']}"},
    }


def output_name(job: dict) -> str:
    """A download name: the input's stem (any script), the job id and the output format's extension."""
    ext = EXTENSIONS.get(job["meta"].get("format", ""), "bin")
    return f"{file_stem(job['input_name'])}-{job['id']}.{ext}"


def batch_json(batch: dict, jobs: list[dict], schema: WorkerSchema) -> dict:
    counts = {s: sum(1 for j in jobs if j["status"] == s) for s in ("queued", "done", "failed")}
    return {"id": batch["id"], "pipeline": batch["pipeline"], "created_at": batch["created_at"],
            "total": len(jobs), **counts, "finished": counts["queued"] == 0,
            "jobs": [job_json(j, schema) for j in jobs],
            "urls": {"self": f"/api/v1/batches/{batch['id']}", "zip": f"/api/v1/batches/{batch['id']}/zip",
                     "page": f"/batches/{batch['id']}"}}
