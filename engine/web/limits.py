"""What keeps the gateway from being exhausted from outside: request bodies refused by
size while they stream in, and failed log-ins counted per account and per address.

* ``BodyLimit`` (ASGI middleware) gives each request a body limit from its path and
  content type (``body_limit``). A declared Content-Length over it is refused before a
  single body byte is read; a chunked body is cut off as soon as its running total passes
  it. The refusal is a ``WebError(413)`` raised from ``receive`` inside the handler, so it
  is answered like any other error (JSON under /api, a page elsewhere).
* ``LoginLimiter``: after N failed log-ins within a window an account (or an address) is
  refused until the window ends; it remembers at most ``max_keys`` keys, oldest dropped.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import errors as E
from .problems import WebError
from .settings import WebSettings

TOO_LARGE = E.TOO_LARGE
MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
BATCH_PATHS = ("/api/v1/batches", "/upload")
PROCESS_PATH = "/api/v1/process"
LEGACY_PATH = "/api/v1/legacy"


def body_limit(settings: WebSettings, path: str, content_type: str) -> tuple[int, str]:
    """(largest body in bytes, error code) for a request. Only the paths that take images
    get more than a form's worth; an urlencoded form never does (it cannot carry a file),
    except on ``/api/v1/process``, whose raw image body is often declared as one (``curl
    --data-binary`` sends that type)."""
    if path == LEGACY_PATH:
        return settings.max_legacy_body_bytes, E.ImageTooLarge.code
    if path == PROCESS_PATH and content_type == MULTIPART:
        return settings.max_upload_bytes + settings.max_form_bytes, E.ImageTooLarge.code
    if path == PROCESS_PATH:
        return settings.max_upload_bytes, E.ImageTooLarge.code
    if path in BATCH_PATHS and content_type == MULTIPART:
        return settings.max_body_bytes, TOO_LARGE
    return settings.max_form_bytes, TOO_LARGE


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _too_large(limit: int, code: str, declared: int | None) -> WebError:
    size = f"is {_mib(declared)}" if declared is not None else "goes on"
    what = "the image" if code == E.ImageTooLarge.code else "the request body"
    return WebError(413, code, f"{what} {size}; the limit here is {_mib(limit)}: nothing past it was read")


class BodyLimit:
    """Refuses request bodies over ``body_limit`` while they stream in."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        limit, code = body_limit(self.settings, scope["path"], content_type)
        length = headers.get("content-length", "").strip()
        declared = int(length) if length.isdigit() else None
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise _too_large(limit, code, declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit, code, declared)
            return message

        await self.app(scope, limited_receive, send)


class LoginLimited(E.EngineError):
    """Too many failed log-ins; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _wait_words(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class LoginLimiter:
    """Failed log-ins per account and per client address, in fixed windows from the first
    failure. Bounded: at most ``max_keys`` accounts and addresses, the least recently
    failed forgotten first. Runs on the event loop (no locking)."""

    def __init__(self, *, per_account: int, per_address: int, window_s: float, max_keys: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"account": per_account, "address": per_address}
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._fails: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()  # key: (first_at_s, n)

    @classmethod
    def from_settings(cls, settings: WebSettings) -> LoginLimiter:
        return cls(per_account=settings.login_fails_per_account, per_address=settings.login_fails_per_address,
                   window_s=settings.login_fail_window_s, max_keys=settings.login_limit_max_keys)

    def __len__(self) -> int:
        return len(self._fails)

    @staticmethod
    def _keys(account: str, address: str) -> list[tuple[str, str]]:
        return [("account", account.casefold()), ("address", address)]

    def _current(self, key: tuple[str, str], now: float) -> tuple[float, int] | None:
        entry = self._fails.get(key)
        if entry is not None and now - entry[0] >= self.window_s:
            del self._fails[key]
            return None
        return entry

    def check(self, account: str, address: str) -> None:
        """Raise ``LoginLimited`` if this account or this address must wait."""
        now = self.clock()
        for key in self._keys(account, address):
            entry = self._current(key, now)
            if entry is not None and entry[1] >= self.limits[key[0]]:
                wait_s = max(1, math.ceil(entry[0] + self.window_s - now))
                whom = "for this account" if key[0] == "account" else "from your address"
                raise LoginLimited(f"Too many failed log-ins {whom}; wait {_wait_words(wait_s)} and try again.",
                                   wait_s)

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        for key in self._keys(account, address):
            first_at_s, n = self._current(key, now) or (now, 0)
            self._fails[key] = (first_at_s, n + 1)
            self._fails.move_to_end(key)
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)

    def succeeded(self, account: str) -> None:
        """A right password clears the account's failures (not the address's)."""
        self._fails.pop(("account", account.casefold()), None)
