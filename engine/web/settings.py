"""The gateway's settings: one dataclass, every default with its unit."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_BROKER = "tcp://127.0.0.1:5555"


@dataclass(frozen=True)
class WebSettings:
    broker: str = DEFAULT_BROKER
    data_dir: Path = field(default_factory=lambda: Path("engine-web-data"))
    task_timeout_s: float = 60.0  # one image, end to end
    heartbeat_interval_s: float = 2.0  # to the broker; must match the broker's --heartbeat-interval-s
    broker_check_timeout_s: float = 3.0  # "is the broker there?" before a batch, and the status page
    max_upload_bytes: int = 32 * 1024 * 1024  # one image
    max_batch_files: int = 50
    quota_bytes: int = 512 * 1024 * 1024  # stored inputs + outputs per user
    retention_days: float = 30.0  # older jobs are deleted
    retention_jobs: int = 1000  # per user; the oldest beyond this are deleted
    max_in_flight: int = 16  # tasks the gateway has at the broker at once
    session_days: float = 14.0
    secure_cookies: bool = False  # set behind HTTPS
    max_form_bytes: int = 64 * 1024  # a body without images: log-in and other forms, JSON
    max_json_depth: int = 32  # nesting of a JSON body (the legacy format needs 1)
    login_fails_per_account: int = 5  # failed log-ins per account within the window, then HTTP 429
    login_fails_per_address: int = 20  # failed log-ins per client address within the window
    login_fail_window_s: float = 300.0
    login_limit_max_keys: int = 10_000  # accounts + addresses remembered; the oldest are forgotten first
    max_concurrent_hashes: int = 4  # argon2 hashes at once, each in a thread (about 64 MiB each)
    header_timeout_s: float = 10.0  # from a connection's opening (or its last response) to its request's headers
    keep_alive_s: float = 5.0  # an idle connection after a response is closed after this
    max_connections: int = 512  # open at once; over it the longest waiting for headers is closed
    listen_backlog: int = 256  # connections the kernel queues before they are accepted
    access_log: str = "requests"  # "all", "requests" (not the pages' own polling nor static files) or "off"

    @property
    def max_body_bytes(self) -> int:
        """Largest HTTP request body: a full batch plus room for the form fields."""
        return self.max_upload_bytes * self.max_batch_files + 1024 * 1024

    @property
    def max_legacy_body_bytes(self) -> int:
        """Largest legacy JSON body: one image in base64 (a third bigger) plus the fields."""
        return self.max_upload_bytes * 4 // 3 + 4096
