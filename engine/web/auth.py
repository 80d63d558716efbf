"""Accounts, sessions, API tokens and CSRF.

* Passwords: argon2id (argon2-cffi), salted, re-hashed when the parameters change.
  Hashing and verifying run in threads, at most ``max_concurrent_hashes`` at once, so
  the event loop keeps answering other requests meanwhile.
* Failed log-ins are limited per account and per address (``limits.LoginLimiter``):
  over the limit a log-in is refused before any hashing, with the time to wait.
* Sessions: a random cookie (HttpOnly, SameSite=Lax); the database keeps only its SHA-256.
* API tokens: ``eng_`` + 32 random bytes, shown once, stored as SHA-256, revocable.
* CSRF: a random ``engine_csrf`` cookie (HttpOnly, SameSite=Strict) whose value each form
  repeats in a hidden field and each script in the ``X-CSRF-Token`` header (double
  submit). Requests authenticated by a bearer token carry no cookies and need none.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import Response

from ..errors import EngineError
from .db import NameTaken, Store
from .limits import LoginLimiter
from .settings import WebSettings

SESSION_COOKIE = "engine_session"
CSRF_COOKIE = "engine_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
TOKEN_PREFIX = "eng_"
MIN_NAME_CHARS = 3
MAX_NAME_CHARS = 32
NAME_CLASS = r"A-Za-z0-9_.\-"  # the characters of a name, as a regex class (also the page's pattern)
NAME_RULE = re.compile(rf"^[{NAME_CLASS}]{{{MIN_NAME_CHARS},{MAX_NAME_CHARS}}}$")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
# The rules as the sign-up page states them (before submitting) and as a refusal says them.
NAME_RULE_TEXT = f"A user name has {MIN_NAME_CHARS} to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-'."
PASSWORD_RULE_TEXT = f"A password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters."

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class AccountError(EngineError):
    """Sign-up or log-in refused; the message is shown to the person."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Run in a thread; they look ``_hasher`` up at each call.
def _hash(password: str) -> str:
    return _hasher.hash(password)


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(pw_hash, password))
    except (VerificationError, InvalidHashError):
        return False


class Auth:
    def __init__(self, store: Store, settings: WebSettings) -> None:
        self.store = store
        self.settings = settings
        self.login_limiter = LoginLimiter.from_settings(settings)
        self._hash_slots = asyncio.Semaphore(settings.max_concurrent_hashes)

    async def _off_loop(self, fn, *args):
        """A password hash or check in a thread, at most ``max_concurrent_hashes`` at once."""
        async with self._hash_slots:
            return await asyncio.to_thread(fn, *args)

    # -- accounts -------------------------------------------------------------------------

    async def sign_up(self, name: str, password: str) -> dict:
        if not NAME_RULE.match(name or ""):
            raise AccountError(NAME_RULE_TEXT)
        if not MIN_PASSWORD_CHARS <= len(password or "") <= MAX_PASSWORD_CHARS:
            raise AccountError(PASSWORD_RULE_TEXT)
        if self.store.user_by_name(name) is not None:  # no hash spent on a taken name
            raise AccountError(f"The name {name!r} is taken; choose another or log in.")
        try:
            user_id = self.store.create_user(name, await self._off_loop(_hash, password))
        except NameTaken:
            raise AccountError(f"The name {name!r} is taken; choose another or log in.") from None
        return {"id": user_id, "name": name}

    async def log_in(self, name: str, password: str, address: str) -> dict:
        """The user, or ``AccountError`` (``limits.LoginLimited`` when it must wait)."""
        name, password = name or "", password or ""
        self.login_limiter.check(name, address)
        user = self.store.user_by_name(name) if len(password) <= MAX_PASSWORD_CHARS else None
        if not await self._off_loop(_verify, user["pw_hash"] if user else _DUMMY_HASH, password) or user is None:
            self.login_limiter.failed(name, address)
            raise AccountError("Wrong user name or password.")
        self.login_limiter.succeeded(name)
        if _hasher.check_needs_rehash(user["pw_hash"]):
            self.store.set_password_hash(user["id"], await self._off_loop(_hash, password))
        return {"id": user["id"], "name": user["name"]}

    # -- sessions -------------------------------------------------------------------------

    def start_session(self, response: Response, user_id: int) -> None:
        token = secrets.token_urlsafe(32)
        ttl_s = self.settings.session_days * 86400
        self.store.add_session(user_id, digest(token), ttl_s)
        response.set_cookie(SESSION_COOKIE, token, max_age=int(ttl_s), httponly=True, samesite="lax",
                            secure=self.settings.secure_cookies, path="/")
        # A new CSRF secret with each log-in: a token seen before it is worth nothing after.
        self.set_csrf_cookie(response, secrets.token_urlsafe(32))

    def end_session(self, request: Request, response: Response) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            self.store.drop_session(digest(token))
        response.delete_cookie(SESSION_COOKIE, path="/")

    def user(self, request: Request) -> dict | None:
        """The user a request speaks for: bearer token first, then session cookie."""
        if "user" in request.scope.get("state", {}):
            return request.state.user
        user = None
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            user = self.store.token_user(digest(header[7:].strip()))
            request.state.by_token = user is not None
        elif request.cookies.get(SESSION_COOKIE):
            user = self.store.session_user(digest(request.cookies[SESSION_COOKIE]))
        request.state.user = user
        return user

    # -- API tokens -----------------------------------------------------------------------

    def new_token(self, user_id: int, name: str) -> tuple[int, str]:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        return self.store.add_token(user_id, (name or "token")[:64], digest(token)), token

    # -- CSRF -----------------------------------------------------------------------------

    def csrf_token(self, request: Request) -> str:
        """The token to put in this page's forms (a new one if the browser has none)."""
        if not hasattr(request.state, "csrf"):
            request.state.csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        return request.state.csrf

    def set_csrf_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict",
                            secure=self.settings.secure_cookies, path="/")

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        if getattr(request.state, "by_token", False):
            return True
        cookie = request.cookies.get(CSRF_COOKIE)
        submitted = submitted or request.headers.get(CSRF_HEADER)
        return cookie is not None and submitted is not None and cookie != "" and submitted != "" \
            and hmac.compare_digest(cookie, submitted)
