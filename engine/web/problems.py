"""Errors as HTTP: one table from engine exceptions to statuses, one JSON error shape.

The API answers every error as ``{"error": <message for a person>, "code": <stable code>}``
with the status below; pages show the same message. A retryable code (``errors.is_retryable``:
busy, broker_unavailable, timeout, worker_crashed) and a 429 come with ``Retry-After``.
"""
from __future__ import annotations

from starlette.responses import JSONResponse

from .. import errors as e


class WebError(e.EngineError):
    """An HTTP error raised by the gateway itself (not found, bad form, not logged in); its
    ``code`` is one of ``errors.CODES`` (e.g. ``errors.NOT_FOUND``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# First match wins, so subclasses come before their parents.
STATUS_BY_ERROR: list[tuple[type[Exception], int]] = [
    (e.ImageTooLarge, 413),
    (e.ImageError, 415),
    (e.PipelineError, 422),
    (e.QuotaError, 429),
    (e.BusyError, 503),
    (e.Unauthorized, 403),
    (e.TaskCancelled, 409),
    (e.DeadlineExceeded, 504),
    (e.TaskTimeout, 504),
    (e.BrokerUnavailable, 503),
    (e.WorkerCrashed, 502),
    (e.TaskFailed, 502),
    (e.TaskError, 502),  # internal and unknown codes: the fault is upstream of the gateway
    (e.EngineError, 502),
]

RETRY_AFTER_S = 5  # what a retryable answer tells the caller to wait

_BROKER_DOWN = ("The processing engine is not reachable (is the broker running at {broker}?). "
                "Nothing was processed; try again when it is back.")


def describe(exc: Exception, *, broker: str = "") -> tuple[int, str, str]:
    """(HTTP status, stable code, message for a person) for an error."""
    if isinstance(exc, WebError):
        return exc.status, exc.code, exc.message
    status = next((s for cls, s in STATUS_BY_ERROR if isinstance(exc, cls)), 500)
    if isinstance(exc, e.BrokerUnavailable):
        return status, exc.code, _BROKER_DOWN.format(broker=broker or "its address")
    if isinstance(exc, e.TaskTimeout):
        return status, exc.code, f"The engine did not answer in time: {exc}"
    code = getattr(exc, "code", e.InternalError.code)
    message = getattr(exc, "message", None) or str(exc)
    return status, code, message


def error_json(exc: Exception, *, broker: str = "", extra: dict | None = None) -> JSONResponse:
    status, code, message = describe(exc, broker=broker)
    body = {"error": message, "code": code, **(extra or {})}
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 or e.is_retryable(code) else None
    return JSONResponse(body, status_code=status, headers=headers)
