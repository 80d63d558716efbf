"""The ASGI application: routes, error handlers, security headers and the lifespan that
opens the database, the image store and the engine client (and closes them)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import errors as E
from ..errors import EngineError, InternalError
from . import api, api_misc, pages, status_events
from .access import AccessLog
from .auth import Auth
from .blobs import BlobStore
from .common import Parts
from .db import Store
from .jobs import Jobs
from .limits import BodyLimit
from .link import EngineLink
from .problems import WebError, error_json
from .schema import WorkerSchema
from .settings import WebSettings
from .status import StatusMonitor

log = logging.getLogger("engine.web")

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                 b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the headers above to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def on_error(request: Request, exc: Exception) -> Response:
    """Engine and gateway errors: JSON under /api, a page elsewhere."""
    if _is_api(request):
        return error_json(exc, broker=request.app.state.parts.settings.broker)
    return pages.error_page(request, exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: E.NOT_FOUND, 405: E.METHOD_NOT_ALLOWED, 413: E.TOO_LARGE}
    err = WebError(exc.status_code, codes.get(exc.status_code, E.HTTP_ERROR), str(exc.detail))
    return await on_error(request, err)


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    err = WebError(500, InternalError.code, "Something went wrong in the web gateway; it has been logged.")
    return await on_error(request, err)


def create_app(settings: WebSettings) -> Starlette:
    """The gateway as an ASGI app. Nothing is opened until the app's lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(data_dir / "web.sqlite3")
        interrupted = store.fail_unfinished("the web gateway restarted before this job finished; re-run it")
        if interrupted:
            log.warning("%d job(s) were interrupted by the last stop", interrupted)
        blobs = BlobStore(data_dir / "images")
        link = EngineLink(settings)
        await link.start()
        schema = WorkerSchema(link)
        jobs = Jobs(store, blobs, link, schema, settings)
        app.state.parts = Parts(settings=settings, store=store, blobs=blobs, auth=Auth(store, settings),
                                link=link, schema=schema, jobs=jobs, status=StatusMonitor(link))
        retention = asyncio.ensure_future(jobs.retention_loop())
        try:
            yield
        finally:
            retention.cancel()
            await app.state.parts.status.close()
            await jobs.close()
            await link.close()
            store.close()

    static = StaticFiles(directory=Path(__file__).with_name("static"))
    routes = [*pages.routes, *status_events.routes, *api.routes, *api_misc.routes, Mount("/static", static,
                                                                                         name="static")]
    handlers = {WebError: on_error, EngineError: on_error, HTTPException: on_http_error, Exception: on_crash}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(BodyLimit, settings=settings)  # per path, while the body streams in
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog, mode=settings.access_log)  # outermost: sees every answer as sent
    return app
