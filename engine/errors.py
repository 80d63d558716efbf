"""Every exception the engine raises, under one root.

    EngineError                     root: catch this to catch everything below
    ├── ConfigError                 bad settings (flags, environment, key files)
    ├── ProtocolError               a message that breaks the wire format (bad_message)
    │   └── VersionError            a peer speaking another protocol version
    ├── TaskTimeout                 the client waited longer than its timeout (also a TimeoutError)
    ├── BrokerUnavailable           the client is closed, or no broker answered in time
    └── TaskError                   a task failed; carries the stable wire ``code``
        ├── PipelineError           the pipeline text or structure is invalid
        │   ├── UnknownOperation    an operation name no worker offers
        │   └── BadParameter        a parameter missing, unknown, mistyped or out of range
        ├── ImageError              the input could not be decoded
        │   └── ImageTooLarge       the input is over the pixel or byte limit
        ├── BusyError               the broker's queue is full: try again later
        ├── QuotaError              the client is over its quota
        ├── Unauthorized            the peer may not do this
        ├── WorkerCrashed           the worker process died on this task (retried by the broker)
        ├── TaskFailed              the task crashed or hung its worker on every retry
        ├── ResultTooLarge          the result is over the message limit and cannot be delivered
        ├── DeadlineExceeded        the task ran past its deadline
        ├── TaskCancelled           the task was cancelled
        └── InternalError           a bug: the message says where

Errors that travel on the wire are ``TaskError`` subclasses: each class has a stable
``code`` (a short snake_case string that never changes meaning) and every instance a
message a person can act on. ``error_from_code`` turns a received code back into the
right class, so a client catches ``UnknownOperation``, not a string; the wire ``meta``
(which worker, which limit) travels with it as ``error.meta``. ``retryable`` says whether
the same task may succeed if sent again (the broker retries those on another worker).
This module is the only place a code is spelled: elsewhere write ``BusyError.code``.
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


class TaskTimeout(EngineError, builtins.TimeoutError):
    """No result arrived within the client's timeout."""


class BrokerUnavailable(EngineError):
    """The client is closed, or could not reach a broker."""


class TaskError(EngineError):
    """A task failed. ``code`` is stable on the wire; ``message`` is for people."""

    code = "task_error"
    retryable = False

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


class BusyError(TaskError):
    code = "busy"
    retryable = True


class QuotaError(TaskError):
    code = "quota"
    retryable = True


class Unauthorized(TaskError):
    code = "unauthorized"


class WorkerCrashed(TaskError):
    code = "worker_crashed"
    retryable = True


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


def _all_task_errors(cls: type[TaskError]) -> list[type[TaskError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_task_errors(sub))
    return found


ERRORS_BY_CODE: dict[str, type[TaskError]] = {c.code: c for c in _all_task_errors(TaskError)}


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
