"""Server-rendered pages. Every form carries the CSRF token; the scripts in static/app.js
only add drag and drop, the pipeline builder and live refresh on top of plain forms."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import errors as E
from ..errors import EngineError
from . import auth
from .api import zip_response
from .auth import CSRF_FIELD, AccountError
from .common import job_json, parts, read_form
from .limits import LoginLimited
from .problems import WebError, describe

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                        autoescape=select_autoescape(["html"]))
HISTORY_PAGE = 50


def _size(n_bytes: int | None) -> str:
    if not n_bytes:
        return "0 B"
    n = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


TEMPLATES.filters["size"] = _size
# The account rules, from auth's constants: the sign-up page states them and its inputs check them.
TEMPLATES.globals["account_rules"] = {
    "name_min": auth.MIN_NAME_CHARS, "name_max": auth.MAX_NAME_CHARS, "name_pattern": f"[{auth.NAME_CLASS}]+",
    "password_min": auth.MIN_PASSWORD_CHARS, "password_max": auth.MAX_PASSWORD_CHARS,
    "name_text": auth.NAME_RULE_TEXT, "password_text": auth.PASSWORD_RULE_TEXT}


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    p = parts(request)
    csrf = p.auth.csrf_token(request)
    html = TEMPLATES.get_template(template).render(request=request, user=p.auth.user(request), csrf=csrf,
                                               csrf_field=CSRF_FIELD, **context)
    response = HTMLResponse(html, status_code=status_code)
    if request.cookies.get("engine_csrf") != csrf:
        p.auth.set_csrf_cookie(response, csrf)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def page_user(request: Request) -> dict:
    user = parts(request).auth.user(request)
    if user is None:
        raise WebError(401, E.LOGIN, "Log in first.")
    return user


async def checked_form(request: Request, *, max_files: int = 0) -> tuple[dict, list]:
    fields, uploads = await read_form(request, max_files=max_files)
    if not parts(request).auth.csrf_ok(request, fields.get(CSRF_FIELD, "")):
        raise WebError(403, E.CSRF, "This form has expired (or came from another site). Reload the page "
                                    "and send it again.")
    return fields, uploads


def error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, WebError) and exc.status == 401:
        return redirect("/login?next=" + quote(request.url.path))
    status, code, message = describe(exc, broker=parts(request).settings.broker)
    return render(request, "error.html", status_code=status, code=code, message=message)


# -- accounts ---------------------------------------------------------------------------------

async def home(request: Request) -> Response:
    return redirect("/upload" if parts(request).auth.user(request) else "/login")


def _next_url(request: Request, fields: dict) -> str:
    target = fields.get("next") or request.query_params.get("next") or "/upload"
    return target if target.startswith("/") and not target.startswith("//") else "/upload"


async def account(request: Request) -> Response:
    """GET shows the form; POST signs up or logs in (/signup or /login)."""
    mode = "signup" if request.url.path == "/signup" else "login"
    if request.method == "GET":
        return render(request, "login.html", mode=mode, next=request.query_params.get("next", ""))
    fields, _ = await checked_form(request)
    auth = parts(request).auth
    name, password = fields.get("name", "").strip(), fields.get("password", "")
    try:
        if mode == "signup":
            user = await auth.sign_up(name, password)
        else:
            user = await auth.log_in(name, password, request.client.host if request.client else "")
    except (AccountError, LoginLimited) as exc:
        status = 429 if isinstance(exc, LoginLimited) else 400 if mode == "signup" else 401
        response = render(request, "login.html", status_code=status, mode=mode, error=str(exc),
                          name=fields.get("name", ""), next=fields.get("next", ""))
        if isinstance(exc, LoginLimited):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    moved = redirect(_next_url(request, fields))
    auth.start_session(moved, user["id"])
    return moved


async def logout(request: Request) -> Response:
    await checked_form(request)
    response = redirect("/login")
    parts(request).auth.end_session(request, response)
    return response


# -- processing -------------------------------------------------------------------------------

async def _upload_page(request: Request, status_code: int = 200, **context) -> HTMLResponse:
    user = page_user(request)
    p = parts(request)
    offered = await p.schema.listing()
    return render(request, "upload.html", status_code=status_code, ops_json=script_json(offered["operations"]),
                  ops_note=offered.get("note"), settings=p.settings, used=p.store.usage_bytes(user["id"]),
                  **context)


def script_json(value: object) -> str:
    """JSON to put inside a <script> element: workers declare these texts, so ``<`` and
    ``>`` are escaped and no ``</script>`` in one can end the element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def upload(request: Request) -> Response:
    if request.method == "GET":
        return await _upload_page(request, pipeline=request.query_params.get("pipeline", ""))
    user = page_user(request)
    p = parts(request)
    fields, uploads = await checked_form(request, max_files=p.settings.max_batch_files)
    try:
        batch_id = await p.jobs.submit_batch(user["id"], fields.get("pipeline", ""), uploads)
    except (EngineError, WebError) as exc:
        status, _code, message = describe(exc, broker=p.settings.broker)
        return await _upload_page(request, status_code=status, error=message, pipeline=fields.get("pipeline", ""))
    return redirect(f"/batches/{batch_id}")


async def batch_page(request: Request) -> Response:
    user = page_user(request)
    store = parts(request).store
    batch = store.batch(user["id"], request.path_params["batch_id"])
    if batch is None:
        raise WebError(404, E.NOT_FOUND, "No such batch in your history.")
    jobs = [job_json(j, parts(request).schema) for j in store.batch_jobs(user["id"], batch["id"])]
    return render(request, "batch.html", batch=batch, jobs=jobs)


async def batch_zip(request: Request) -> Response:
    """The zip button's target: the file, or an error page (not the API's JSON)."""
    return await zip_response(request, page_user(request))


# -- history ----------------------------------------------------------------------------------

async def history(request: Request) -> Response:
    user = page_user(request)
    store = parts(request).store
    try:
        page = max(0, int(request.query_params.get("page", "0")))
    except ValueError:
        page = 0
    jobs = [job_json(j, parts(request).schema)
            for j in store.jobs(user["id"], limit=HISTORY_PAGE, offset=page * HISTORY_PAGE)]
    total = store.count_jobs(user["id"])
    return render(request, "history.html", jobs=jobs, page=page, total=total,
                  more=(page + 1) * HISTORY_PAGE < total, used=store.usage_bytes(user["id"]),
                  settings=parts(request).settings)


def _own_job(request: Request, user: dict) -> dict:
    job = parts(request).store.job(user["id"], request.path_params["job_id"])
    if job is None:
        raise WebError(404, E.NOT_FOUND, "No such job in your history.")
    return job


async def job_page(request: Request) -> Response:
    job = _own_job(request, page_user(request))
    return render(request, "job.html", job=job_json(job, parts(request).schema))


async def job_action(request: Request) -> Response:
    """POST /jobs/{id}/rerun or /jobs/{id}/delete from the history and job pages."""
    user = page_user(request)
    await checked_form(request)
    p = parts(request)
    if request.path_params["action"] == "rerun":
        return redirect(f"/batches/{await p.jobs.rerun(user['id'], request.path_params['job_id'])}")
    if request.path_params["action"] == "delete":
        if not await p.jobs.delete(user["id"], request.path_params["job_id"]):
            raise WebError(404, E.NOT_FOUND, "No such job in your history.")
        return redirect("/history")
    raise WebError(404, E.NOT_FOUND, "No such action.")


# -- status and tokens ------------------------------------------------------------------------

async def status_page(request: Request) -> Response:
    page_user(request)
    monitor = parts(request).status
    return render(request, "status.html", snapshot=await monitor.snapshot(), charts=monitor.charts())


async def tokens_page(request: Request) -> Response:
    user = page_user(request)
    p = parts(request)
    new_token = None
    if request.method == "POST":
        fields, _ = await checked_form(request)
        if fields.get("revoke"):
            p.store.revoke_token(user["id"], int(fields["revoke"]) if fields["revoke"].isdigit() else -1)
            return redirect("/tokens")
        _id, new_token = p.auth.new_token(user["id"], fields.get("name", "").strip() or "token")
    return render(request, "tokens.html", tokens=p.store.tokens(user["id"]), new_token=new_token)


routes = [
    Route("/", home),
    Route("/signup", account, methods=["GET", "POST"]),
    Route("/login", account, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/upload", upload, methods=["GET", "POST"]),
    Route("/batches/{batch_id}", batch_page),
    Route("/batches/{batch_id}/zip", batch_zip),
    Route("/history", history),
    Route("/jobs/{job_id}", job_page),
    Route("/jobs/{job_id}/{action}", job_action, methods=["POST"]),
    Route("/status", status_page),
    Route("/tokens", tokens_page, methods=["GET", "POST"]),
]
