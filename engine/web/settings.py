"""The gateway's settings: one dataclass, every default with its unit."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..protocol import HEARTBEAT_INTERVAL_S
from ..settings import fixed, setting
from .access import MODES

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_BROKER = "tcp://127.0.0.1:5555"
MIB = 2**20


@dataclass(frozen=True)
class WebSettings:
    """Every field a flag of ``python -m engine.web`` sets is declared with it (``setting``);
    the others say why none does (``fixed``)."""

    broker: str = setting(DEFAULT_BROKER, env="ENGINE_WEB_BROKER", help="the broker's front endpoint")
    data_dir: Path = setting(Path("engine-web-data"), env="ENGINE_WEB_DATA_DIR", type=Path,
                             help="folder for the SQLite history (web.sqlite3) and the content-addressed images")
    task_timeout_s: float = setting(  # one image, end to end
        60.0, env="ENGINE_WEB_TASK_TIMEOUT_S",
        help="seconds one image may take at the engine before the page reports a timeout")
    heartbeat_interval_s: float = setting(  # to the broker, until it announces its own (its first answer)
        HEARTBEAT_INTERVAL_S, env="ENGINE_HEARTBEAT_INTERVAL_S",
        help="seconds between heartbeats to the broker until it answers; then the broker's own")
    broker_check_timeout_s: float = setting(  # "is the broker there?" before a batch, and the status page
        3.0, env="ENGINE_WEB_BROKER_CHECK_TIMEOUT_S",
        help="seconds to wait for the broker's answer before saying it is down")
    max_upload_bytes: int = setting(  # one image
        32 * MIB, flag="--max-upload-mb", scale=MIB, env="ENGINE_WEB_MAX_UPLOAD_MB",
        help="largest image accepted, in MiB (bigger: HTTP 413)")
    max_batch_files: int = setting(50, env="ENGINE_WEB_MAX_BATCH_FILES", help="most images in one batch")
    quota_bytes: int = setting(  # stored inputs + outputs per user
        512 * MIB, flag="--quota-mb", scale=MIB, env="ENGINE_WEB_QUOTA_MB",
        help="storage per user (inputs and outputs), in MiB; over it uploads get HTTP 429")
    retention_days: float = setting(  # older jobs are deleted
        30.0, env="ENGINE_WEB_RETENTION_DAYS", help="jobs older than this are deleted with their images")
    retention_jobs: int = setting(  # per user; the oldest beyond this are deleted
        1000, env="ENGINE_WEB_RETENTION_JOBS", help="jobs kept per user; the oldest beyond this are deleted")
    max_in_flight: int = setting(  # tasks the gateway has at the broker at once
        16, env="ENGINE_WEB_MAX_IN_FLIGHT", help="images the gateway has at the broker at once, over all users")
    session_days: float = fixed(14.0, why="a log-in's lifetime, not a deployment's choice")
    secure_cookies: bool = setting(  # set behind HTTPS
        False, env="ENGINE_WEB_SECURE_COOKIES", help="mark cookies Secure (when served over HTTPS)")
    max_form_bytes: int = fixed(  # a body without images: log-in and other forms, JSON
        64 * 1024, why="bodies without images are small whatever the deployment")
    max_json_depth: int = fixed(32, why="nesting of a JSON body (the legacy format needs 1)")
    login_fails_per_account: int = setting(  # failed log-ins per account within the window, then HTTP 429
        5, env="ENGINE_WEB_LOGIN_FAILS_PER_ACCOUNT",
        help="failed log-ins per account within --login-fail-window-s before HTTP 429")
    login_fails_per_address: int = setting(  # failed log-ins per client address within the window
        20, env="ENGINE_WEB_LOGIN_FAILS_PER_ADDRESS",
        help="failed log-ins per client address within --login-fail-window-s before HTTP 429")
    login_fail_window_s: float = setting(
        300.0, env="ENGINE_WEB_LOGIN_FAIL_WINDOW_S", help="seconds a failed log-in counts for")
    login_limit_max_keys: int = fixed(  # accounts + addresses remembered; the oldest are forgotten first
        10_000, why="memory bound of the log-in limiter; the oldest are forgotten first")
    max_concurrent_hashes: int = setting(  # argon2 hashes at once, each in a thread (about 64 MiB each)
        4, env="ENGINE_WEB_MAX_CONCURRENT_HASHES",
        help="password hashes computed at once, each in a thread (about 64 MiB each)")
    header_timeout_s: float = setting(  # from a connection's opening (or its last response) to its request's headers
        10.0, env="ENGINE_WEB_HEADER_TIMEOUT_S",
        help="seconds a connection has to send its request's headers, from its opening or its last "
             "response; slower ones are closed")
    keep_alive_s: float = setting(  # an idle connection after a response is closed after this
        5.0, env="ENGINE_WEB_KEEP_ALIVE_S", help="seconds an idle connection is kept open after a response")
    max_connections: int = setting(  # open at once; over it the longest waiting for headers is closed
        512, env="ENGINE_WEB_MAX_CONNECTIONS",
        help="connections open at once; a new one closes the one waiting longest for its headers, or gets "
             "HTTP 503 busy when all are busy with requests")
    listen_backlog: int = setting(  # connections the kernel queues before they are accepted
        256, env="ENGINE_WEB_LISTEN_BACKLOG",
        help="connections the kernel queues before the gateway accepts them (capped by net.core.somaxconn)")
    # "all", "requests" (not the pages' own polling nor static files) or "off"
    access_log: str = setting(
        "requests", env="ENGINE_WEB_ACCESS_LOG", choices=MODES,
        help="one line per request: all; requests (everything but the pages' own polling of status and "
             "batch progress, and static files); off")

    @property
    def max_body_bytes(self) -> int:
        """Largest HTTP request body: a full batch plus room for the form fields."""
        return self.max_upload_bytes * self.max_batch_files + 1024 * 1024

    @property
    def max_legacy_body_bytes(self) -> int:
        """Largest legacy JSON body: one image in base64 (a third bigger) plus the fields."""
        return self.max_upload_bytes * 4 // 3 + 4096
