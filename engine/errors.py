"""Every exception the engine raises, under one root.

    EngineError                     root: catch this to catch everything below
    ├── ConfigError                 bad settings (flags, environment, key files)
    │   └── PlanError               the command line's outputs cannot be planned (client/outputs.py)
    ├── ProtocolError               a message that breaks the wire format (bad_message)
    │   ├── VersionError            a peer speaking another protocol version
    │   ├── BadJSON                 JSON from outside that is not strict or too deep (strictjson.py; a ValueError)
    │   ├── CompatError             a request of the older JSON format refused (broker/compat.py; a ValueError)
    │   └── RequestError            a request of the older DL client refused (dlgateway/wire.py)
    ├── ShmError                    a shared-memory segment cannot be made, read or trusted (shm.py; an OSError)
    ├── WebError                    the web gateway's own HTTP refusal: status and code (web/problems.py)
    ├── AccountError, LoginLimited, NameTaken   sign-up and log-in refusals (web/auth.py, limits.py, db.py)
    ├── TransientError              sending the same request again is safe and may succeed
    │   ├── TaskTimeout             the client waited longer than its timeout (timeout; also a TimeoutError)
    │   ├── BrokerUnavailable       the client is closed, or no broker answered in time (broker_unavailable)
    │   ├── BusyError (a TaskError)     the broker's queue is full: try again later
    │   └── WorkerCrashed (a TaskError) the worker process died on this task
    └── TaskError                   a task failed; carries the stable wire ``code``
        ├── PipelineError           the pipeline text or structure is invalid
        │   ├── UnknownOperation    an operation name no worker offers
        │   └── BadParameter        a parameter missing, unknown, mistyped or out of range
        ├── ImageError              the input could not be decoded
        │   └── ImageTooLarge       the input is over the pixel or byte limit
        ├── BusyError               (transient, above)
        ├── QuotaError              the client is over its quota
        ├── Unauthorized            the peer may not do this
        ├── WorkerCrashed           (transient, above)
        ├── TaskFailed              the task crashed or hung its worker on every retry
        ├── ResultTooLarge          the result is over the message limit and cannot be delivered
        ├── DeadlineExceeded        the task ran past its deadline
        ├── TaskCancelled           the task was cancelled
        └── InternalError           a bug: the message says where

Errors that travel on the wire are ``TaskError`` subclasses: each class has a stable
``code`` (a short snake_case string that never changes meaning) and every instance a
message a person can act on. ``error_from_code`` turns a received code back into the
right class, so a client catches ``UnknownOperation``, not a string; the wire ``meta``
(which worker, which limit) travels with it as ``error.meta``. This module is the only
place a code is spelled: elsewhere write ``BusyError.code``, or for the codes that have no
class of their own (the web gateway's refusals, the command line's), the constant below
(``NOT_FOUND``). ``CODES`` holds every code; the test suite fails on a code spelled anywhere else.

Who retries what (httpx's ``TransportError`` is the model): an error is retryable when it is
a ``TransientError``, i.e. ``is_retryable(code)``: the request had no effect or its run was
lost, and every task is a pure function of its image and pipeline, so sending it again is
safe and may succeed. Every party reads that one predicate, each for the errors it sees:

- the broker requeues a task its worker answered with a transient code (``worker_crashed``,
  or ``busy`` from a worker) on another worker, up to ``--max-retries`` attempts, then
  answers ``task_failed`` (which is not transient: the task itself is the suspect);
- the client resends a task the broker answered with a transient code (``busy``) after a
  back-off (0.25 s doubling to 4 s) until the task's own timeout, unless ``retry_busy=False``;
  the transient errors it raises itself (``TaskTimeout``, ``BrokerUnavailable``) end the call,
  since the caller's time budget is spent: the caller may send it again;
- the web gateway adds ``Retry-After`` to every transient answer: 503 for ``busy`` and
  ``broker_unavailable``, 504 for ``timeout``, 502 for ``worker_crashed`` (and to 429 ``quota``).

Everything else is final: the same request would fail the same way (a bad pipeline or image,
a deadline, a cancel, a result too large), or the fix is the caller's (``quota``: a rate quota
clears with time, a storage quota only when files are deleted; ``unauthorized``).
"""
from __future__ import annotations

import builtins
from typing import Any


class EngineError(Exception):
    """Root of every exception raised by the engine."""


class ConfigError(EngineError):
    """A setting (flag, environment variable, key file) is missing or invalid."""


class ProtocolError(EngineError):
    """A message does not follow the wire format.

    ``data`` holds the offending frames (or a prefix of them) and ``__cause__`` the
    low-level error, so a log line can show what arrived and why it was refused.
    """

    code = "bad_message"

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class VersionError(ProtocolError):
    """The peer speaks a protocol version this engine does not."""

    code = "unsupported_version"


class TransientError(EngineError):
    """Sending the same request again is safe and may succeed (see "Who retries what" above).

    Catch this to retry; ``is_retryable(code)`` asks the same of a code received on the wire."""


class TaskTimeout(TransientError, builtins.TimeoutError):
    """No result arrived within the client's timeout (the task may still run: it is cancelled)."""

    code = "timeout"  # HTTP only (web gateway, 504): a client's own verdict never travels on the wire


class BrokerUnavailable(TransientError):
    """The client is closed, or could not reach a broker (none answered in time, or nothing listens
    at its loopback address: ``engine.client.core``): nothing was processed."""

    code = "broker_unavailable"  # HTTP only (web gateway, 503)


class TaskError(EngineError):
    """A task failed. ``code`` is stable on the wire; ``message`` is for people."""

    code = "task_error"

    def __init__(self, message: str, *, task_id: str | None = None, meta: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.task_id = task_id
        self.meta = dict(meta or {})

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class PipelineError(TaskError):
    code = "bad_pipeline"


class UnknownOperation(PipelineError):
    code = "unknown_operation"


class BadParameter(PipelineError):
    code = "bad_parameter"


class ImageError(TaskError):
    code = "bad_image"


class ImageTooLarge(ImageError):
    code = "image_too_large"


class BusyError(TaskError, TransientError):
    """Refused before it was queued (queue full, shutting down, the client not reading)."""

    code = "busy"


class QuotaError(TaskError):
    """Over a quota: final, the caller decides (a rate quota clears with time, storage does not)."""

    code = "quota"


class Unauthorized(TaskError):
    code = "unauthorized"


class WorkerCrashed(TaskError, TransientError):
    """The worker process died while it ran this task: the broker runs it again elsewhere."""

    code = "worker_crashed"


class TaskFailed(TaskError):
    code = "task_failed"


class ResultTooLarge(TaskError):
    code = "result_too_large"


class DeadlineExceeded(TaskError):
    code = "deadline_exceeded"


class TaskCancelled(TaskError):
    code = "cancelled"


class InternalError(TaskError):
    code = "internal"


# Codes with no class of their own: the web gateway's refusals (``web.problems.WebError``, with
# an HTTP status; HTTP only) and what the command line writes in its JSON lines. Final, none
# retryable, except where a refusal reuses a class's code (``WebError(503, BusyError.code)``).
BAD_BASE64 = "bad_base64"
BAD_FORM = "bad_form"
BAD_JSON = "bad_json"
BAD_QUERY = "bad_query"
CSRF = "csrf"
HTTP_ERROR = "http_error"
INTERRUPTED = "interrupted"
LOGIN = "login"
METHOD_NOT_ALLOWED = "method_not_allowed"
NO_IMAGE = "no_image"
NO_PIPELINE = "no_pipeline"
NOT_AN_IMAGE = "not_an_image"
NOT_FOUND = "not_found"
NOT_READY = "not_ready"
TOO_LARGE = "too_large"
TOO_MANY_FILES = "too_many_files"
READ_FAILED = "read_failed"
WRITE_FAILED = "write_failed"

OTHER_CODES: dict[str, str] = {
    BAD_BASE64: "web 400: the legacy endpoint's image is not valid base64",
    BAD_FORM: "web 400/413/415: the form or multipart body is not what the endpoint reads",
    BAD_JSON: "web 400: the body is not the JSON the endpoint reads",
    BAD_QUERY: "web 400: a query parameter is missing its form or out of range",
    CSRF: "web 403: a form or API call without this session's CSRF token",
    HTTP_ERROR: "web: another HTTP error, from the web framework",
    INTERRUPTED: "web: a job cut off by a restart of the gateway (in its history)",
    LOGIN: "web 401: a page for logged-in users",
    METHOD_NOT_ALLOWED: "web 405",
    NO_IMAGE: "web 400: a request with no image",
    NO_PIPELINE: "web 400: a request with no pipeline",
    NOT_AN_IMAGE: "web 409: a job whose input the engine cannot read cannot run again",
    NOT_FOUND: "web 404: no such job, batch, token or page (for this user)",
    NOT_READY: "web 409: nothing of the batch has finished yet",
    TOO_LARGE: "web 413: a request body over its limit",
    TOO_MANY_FILES: "web 413: more files in one batch than allowed",
    READ_FAILED: "command line: an input could not be read (gone or unreadable since it was found)",
    WRITE_FAILED: "command line: a result could not be written to OUTDIR",
}


def _all_task_errors(cls: type[TaskError]) -> list[type[TaskError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_task_errors(sub))
    return found


ERRORS_BY_CODE: dict[str, type[TaskError]] = {c.code: c for c in _all_task_errors(TaskError)}
"""The codes that travel on the wire as ERROR, each with its class."""

CLASSES_BY_CODE: dict[str, type[EngineError]] = {
    **ERRORS_BY_CODE, **{c.code: c for c in (ProtocolError, VersionError, TaskTimeout, BrokerUnavailable)}}

CODES: frozenset[str] = frozenset({*CLASSES_BY_CODE, *OTHER_CODES})
"""Every code the engine sends anywhere: wire ERRORs, HTTP answers, the command line's output."""


def is_retryable(code: str) -> bool:
    """The one retry rule: whether an error of ``code`` is a ``TransientError`` (see above).
    Unknown codes (a newer peer's) are not retried."""
    return issubclass(CLASSES_BY_CODE.get(code, EngineError), TransientError)


def error_class(code: str) -> type[TaskError]:
    """The class of a wire code (unknown codes: TaskError)."""
    return ERRORS_BY_CODE.get(code, TaskError)


def error_from_code(code: str, message: str, *, task_id: str | None = None,
                    meta: dict | None = None) -> TaskError:
    """Build the exception for a code received on the wire (unknown codes: TaskError)."""
    cls = error_class(code)
    err = cls(message, task_id=task_id, meta=meta)
    if cls is TaskError:
        err.code = code
    return err
