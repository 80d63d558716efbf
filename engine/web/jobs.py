"""Jobs and batches: validate, store inputs, send to the engine, keep results, enforce
quotas and retention. Used by both the pages and the API, so they behave the same.

A batch is a list of jobs with one pipeline. Submitting one returns at once; its jobs
run in a background asyncio task (at most ``max_in_flight`` at the broker at a time,
over all users) and their status is read back from the database.

Quota: stored bytes (inputs and outputs) never exceed ``quota_bytes``, however many
uploads race. Bytes are reserved before any work (``_reserve``: the check and the
reservation run on the event loop with no ``await`` between them, so they are atomic)
and handed over to the job's row when it is written, or released on failure. A
submission reserves its inputs and as much again as room for their results; a result
bigger than its input reserves the difference when it arrives, and one that does not
fit fails its job with the quota error and is not kept.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

import cv2

from .. import errors as E
from ..ops import codec
from .blobs import BlobStore
from .db import Store
from .link import EngineLink
from .names import clean_name
from .problems import WebError, describe
from .schema import WorkerSchema
from .settings import WebSettings

log = logging.getLogger("engine.web")

THUMB_PX = 160
THUMB_QUALITY = 80
RETENTION_EVERY_S = 3600.0


@dataclass(frozen=True)
class Upload:
    name: str  # the file name sent, made safe to keep and show by names.clean_name
    data: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", clean_name(self.name))


def new_id() -> str:
    return secrets.token_hex(8)


def make_thumbnail(data: bytes) -> bytes | None:
    """A small JPEG of an image for history pages (None if it cannot be decoded)."""
    try:
        image, _fmt = codec.decode(data)
    except E.ImageError:
        return None
    height, width = image.shape[:2]
    scale = THUMB_PX / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    return codec.encode(image, "jpeg", THUMB_QUALITY)


class Jobs:
    def __init__(self, store: Store, blobs: BlobStore, link: EngineLink, schema: WorkerSchema,
                 settings: WebSettings) -> None:
        self.store = store
        self.blobs = blobs
        self.link = link
        self.schema = schema
        self.settings = settings
        self._running: set[asyncio.Task] = set()
        self._reserved: dict[int, int] = {}  # user id -> bytes being stored, not yet in a job row

    # -- submitting -----------------------------------------------------------------------

    async def _texts(self, pipeline: object) -> tuple[str, str]:
        """(text for the engine, text to show) of a pipeline checked by ``WorkerSchema.check``
        before anything is stored. Pages and history show a text pipeline as the user wrote it."""
        text = await self.schema.check(pipeline)  # type: ignore[arg-type]
        return text, pipeline.strip() if isinstance(pipeline, str) else text

    def _check_uploads(self, uploads: list[Upload]) -> None:
        if not uploads:
            raise WebError(400, E.NO_IMAGE, "No image was sent: choose or drop at least one file.")
        if len(uploads) > self.settings.max_batch_files:
            raise WebError(413, E.TOO_MANY_FILES, f"{len(uploads)} files in one batch; the limit is "
                                                  f"{self.settings.max_batch_files}.")
        for up in uploads:
            if len(up.data) > self.settings.max_upload_bytes:
                raise E.ImageTooLarge(f"{up.name} is {len(up.data) / 2**20:.1f} MiB; the limit is "
                                      f"{self.settings.max_upload_bytes / 2**20:.0f} MiB per image")
            if not up.data:
                raise E.ImageError(f"{up.name} is empty (0 bytes)")

    def _reserve(self, user_id: int, adding: int, *, what: str) -> int:
        """Reserve ``adding`` bytes of the user's quota, or raise QuotaError. Never awaits."""
        used = self.store.usage_bytes(user_id) + self._reserved.get(user_id, 0)
        if used + adding > self.settings.quota_bytes:
            raise E.QuotaError(f"your storage quota is {self.settings.quota_bytes / 2**20:.1f} MiB and you use "
                               f"{used / 2**20:.1f} MiB; delete some history to make room for {what} "
                               f"({adding / 2**20:.1f} MiB)")
        self._reserved[user_id] = self._reserved.get(user_id, 0) + adding
        return adding

    def _release(self, user_id: int, nbytes: int) -> None:
        left = self._reserved.get(user_id, 0) - nbytes
        if left > 0:
            self._reserved[user_id] = left
        else:
            self._reserved.pop(user_id, None)

    async def _add_jobs(self, user_id: int, batch_id: str | None, pipeline: str,
                        uploads: list[Upload]) -> list[str]:
        """One job row per upload, whose bytes the caller reserved: each reservation is
        handed over to its row as it is written; what is not written is released."""
        job_ids: list[str] = []
        try:
            for up in uploads:
                sha = await asyncio.to_thread(self.blobs.put, up.data)
                job_id = new_id()
                self.store.add_job(job_id, user_id, batch_id=batch_id, pipeline=pipeline,
                                   input_name=up.name, input_sha=sha, input_bytes=len(up.data))
                self._release(user_id, len(up.data))
                job_ids.append(job_id)
        finally:
            self._release(user_id, sum(len(up.data) for up in uploads[len(job_ids):]))
        return job_ids

    async def submit_batch(self, user_id: int, pipeline: object, uploads: list[Upload]) -> str:
        """Store the inputs, start processing in the background; returns the batch id."""
        canonical, shown = await self._texts(pipeline)
        self._check_uploads(uploads)
        inputs = sum(len(u.data) for u in uploads)
        self._reserve(user_id, 2 * inputs, what="these images and their results")
        try:
            await self.link.ensure_up()  # "the engine is down" now, not one failed job per image later
        except BaseException:
            self._release(user_id, 2 * inputs)
            raise
        batch_id = new_id()
        self.store.add_batch(batch_id, user_id, shown)
        try:
            job_ids = await self._add_jobs(user_id, batch_id, shown, uploads)
        except BaseException:
            self._release(user_id, inputs)  # the results' share; _add_jobs released the inputs'
            raise
        # Each job's _run_one releases its result's share.
        task = asyncio.ensure_future(self._run_all(user_id, list(zip(job_ids, uploads)), canonical))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return batch_id

    async def process_now(self, user_id: int, pipeline: object, upload: Upload, *,
                          trace: str | None = None) -> tuple[dict, bytes]:
        """Process one image and wait for it; returns the finished job and the result, or
        raises the engine error (the failed job stays in history). ``trace``: a trace id for
        every log line about the task and the result's metadata."""
        canonical, shown = await self._texts(pipeline)
        self._check_uploads([upload])
        self._reserve(user_id, 2 * len(upload.data), what="this image and its result")
        try:
            (job_id,) = await self._add_jobs(user_id, None, shown, [upload])
        except BaseException:
            self._release(user_id, len(upload.data))
            raise
        output = await self._run_one(user_id, job_id, upload.data, canonical, reraise=True, trace=trace)
        await self.enforce_retention()
        return self.store.job(user_id, job_id), output  # type: ignore[return-value]

    async def process_unkept(self, pipeline: object, upload: Upload, *,
                             trace: str | None = None) -> tuple[dict, bytes]:
        """Process one image and keep nothing (no history, no stored input or result, no
        thumbnail): what a device that only wants the answer asks for. Returns the
        result's metadata and bytes, or raises the engine error."""
        canonical, _shown = await self._texts(pipeline)
        self._check_uploads([upload])
        output, meta = await self.link.process(upload.data, canonical, trace=trace)
        meta["input_bytes"], meta["output_bytes"] = len(upload.data), len(output)
        return meta, output

    async def rerun(self, user_id: int, job_id: str) -> str:
        """A new batch with the same input and pipeline as an earlier job."""
        job = self.store.job(user_id, job_id)
        if job is None:
            raise WebError(404, E.NOT_FOUND, "No such job in your history.")
        if job["error_code"] == E.ImageError.code:
            raise WebError(409, E.NOT_AN_IMAGE, f"{job['input_name']} is not an image the engine can read; "
                                                "running it again would fail the same way.")
        data = await asyncio.to_thread(self.blobs.get, job["input_sha"])
        return await self.submit_batch(user_id, job["pipeline"], [Upload(job["input_name"], data)])

    # -- running --------------------------------------------------------------------------

    async def _run_all(self, user_id: int, work: list[tuple[str, Upload]], pipeline: str) -> None:
        await asyncio.gather(*(self._run_one(user_id, job_id, up.data, pipeline) for job_id, up in work))
        await self.enforce_retention()

    async def _run_one(self, user_id: int, job_id: str, data: bytes, pipeline: str, *,
                       reraise: bool = False, trace: str | None = None) -> bytes:
        """Process one stored job. The caller reserved ``len(data)`` for its result."""
        reserved = len(data)
        try:
            try:
                output, meta = await self.link.process(data, pipeline, trace=trace)
                if len(output) > reserved:
                    reserved += self._reserve(user_id, len(output) - reserved, what="the result, which was not kept")
                sha = await asyncio.to_thread(self.blobs.put, output)
                thumb = await asyncio.to_thread(make_thumbnail, output)
                thumb_sha = await asyncio.to_thread(self.blobs.put, thumb) if thumb else None
            except Exception as exc:  # every failure ends up in the job's row, never lost
                if not isinstance(exc, E.EngineError):
                    log.exception("job %s failed in the gateway", job_id)
                _status, code, message = describe(exc, broker=self.settings.broker)
                self.store.fail_job(job_id, code, message)
                if reraise:
                    raise
                return b""
            meta["input_bytes"], meta["output_bytes"] = len(data), len(output)
            self.store.finish_job(job_id, output_sha=sha, output_bytes=len(output), thumb_sha=thumb_sha,
                                  meta=meta)
            return output
        finally:
            self._release(user_id, reserved)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self.store.fail_unfinished("the web gateway stopped before this job finished; re-run it")

    # -- deleting and retention -----------------------------------------------------------

    async def delete(self, user_id: int, job_id: str) -> bool:
        job = self.store.delete_job(user_id, job_id)
        if job is None:
            return False
        for sha in {job["input_sha"], job["output_sha"], job.get("thumb_sha")} - {None}:
            if not self.store.sha_in_use(sha):
                await asyncio.to_thread(self.blobs.remove, sha)
        return True

    async def enforce_retention(self) -> int:
        older_than = time.time() - self.settings.retention_days * 86400
        expired = self.store.expired_jobs(older_than=older_than, keep_per_user=self.settings.retention_jobs)
        for user_id, job_id in expired:
            await self.delete(user_id, job_id)
        return len(expired)

    async def retention_loop(self) -> None:
        while True:
            try:
                await self.enforce_retention()
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(RETENTION_EVERY_S)
