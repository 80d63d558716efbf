"""python -m engine.web: run the web gateway in front of a broker."""
from __future__ import annotations

import argparse

from ..settings import flag, prog, setup_logging
from . import serve
from .access import MODES
from .settings import DEFAULT_BROKER, DEFAULT_LISTEN, WebSettings

MIB = 2**20


def parse_args(argv=None) -> argparse.Namespace:
    d = WebSettings()
    p = argparse.ArgumentParser(
        prog=prog("engine.web"),
        description="Serve the web pages (sign up, build a pipeline, drop images, history, live status) and "
                    "the HTTP API under /api/v1 (try it at /api/v1/docs; OpenAPI at /api/v1/openapi.json). Images are processed by "
                    "the broker at --broker; run it first, e.g. python -m engine.broker --local-workers 2.",
        epilog="Every flag can also be set by the environment variable named in its help.")
    flag(p, "--listen", env="ENGINE_WEB_LISTEN", default=DEFAULT_LISTEN,
         help="host:port to serve HTTP on (keep 127.0.0.1 unless behind an HTTPS proxy)")
    flag(p, "--broker", env="ENGINE_WEB_BROKER", default=DEFAULT_BROKER, help="the broker's front endpoint")
    flag(p, "--data-dir", env="ENGINE_WEB_DATA_DIR", default=str(d.data_dir),
         help="folder for the SQLite history (web.sqlite3) and the content-addressed images")
    flag(p, "--task-timeout-s", env="ENGINE_WEB_TASK_TIMEOUT_S", default=d.task_timeout_s, type=float,
         help="seconds one image may take at the engine before the page reports a timeout")
    flag(p, "--heartbeat-interval-s", env="ENGINE_HEARTBEAT_INTERVAL_S", default=d.heartbeat_interval_s,
         type=float, help="seconds between heartbeats to the broker; use the broker's own value")
    flag(p, "--broker-check-timeout-s", env="ENGINE_WEB_BROKER_CHECK_TIMEOUT_S",
         default=d.broker_check_timeout_s, type=float,
         help="seconds to wait for the broker's answer before saying it is down")
    flag(p, "--max-upload-mb", env="ENGINE_WEB_MAX_UPLOAD_MB", default=d.max_upload_bytes // MIB, type=int,
         help="largest image accepted, in MiB (bigger: HTTP 413)")
    flag(p, "--max-batch-files", env="ENGINE_WEB_MAX_BATCH_FILES", default=d.max_batch_files, type=int,
         help="most images in one batch")
    flag(p, "--quota-mb", env="ENGINE_WEB_QUOTA_MB", default=d.quota_bytes // MIB, type=int,
         help="storage per user (inputs and outputs), in MiB; over it uploads get HTTP 429")
    flag(p, "--retention-days", env="ENGINE_WEB_RETENTION_DAYS", default=d.retention_days, type=float,
         help="jobs older than this are deleted with their images")
    flag(p, "--retention-jobs", env="ENGINE_WEB_RETENTION_JOBS", default=d.retention_jobs, type=int,
         help="jobs kept per user; the oldest beyond this are deleted")
    flag(p, "--max-in-flight", env="ENGINE_WEB_MAX_IN_FLIGHT", default=d.max_in_flight, type=int,
         help="images the gateway has at the broker at once, over all users")
    flag(p, "--login-fails-per-account", env="ENGINE_WEB_LOGIN_FAILS_PER_ACCOUNT",
         default=d.login_fails_per_account, type=int,
         help="failed log-ins per account within --login-fail-window-s before HTTP 429")
    flag(p, "--login-fails-per-address", env="ENGINE_WEB_LOGIN_FAILS_PER_ADDRESS",
         default=d.login_fails_per_address, type=int,
         help="failed log-ins per client address within --login-fail-window-s before HTTP 429")
    flag(p, "--login-fail-window-s", env="ENGINE_WEB_LOGIN_FAIL_WINDOW_S", default=d.login_fail_window_s,
         type=float, help="seconds a failed log-in counts for")
    flag(p, "--max-concurrent-hashes", env="ENGINE_WEB_MAX_CONCURRENT_HASHES", default=d.max_concurrent_hashes,
         type=int, help="password hashes computed at once, each in a thread (about 64 MiB each)")
    flag(p, "--secure-cookies", env="ENGINE_WEB_SECURE_COOKIES", default=d.secure_cookies,
         help="mark cookies Secure (when served over HTTPS)")
    flag(p, "--header-timeout-s", env="ENGINE_WEB_HEADER_TIMEOUT_S", default=d.header_timeout_s, type=float,
         help="seconds a connection has to send its request's headers, from its opening or its last "
              "response; slower ones are closed")
    flag(p, "--keep-alive-s", env="ENGINE_WEB_KEEP_ALIVE_S", default=d.keep_alive_s, type=float,
         help="seconds an idle connection is kept open after a response")
    flag(p, "--max-connections", env="ENGINE_WEB_MAX_CONNECTIONS", default=d.max_connections, type=int,
         help="connections open at once; a new one closes the one waiting longest for its headers, or gets "
              "HTTP 503 busy when all are busy with requests")
    flag(p, "--listen-backlog", env="ENGINE_WEB_LISTEN_BACKLOG", default=d.listen_backlog, type=int,
         help="connections the kernel queues before the gateway accepts them (capped by net.core.somaxconn)")
    flag(p, "--access-log", env="ENGINE_WEB_ACCESS_LOG", default=d.access_log, choices=MODES,
         help="one line per request: all; requests (everything but the pages' own polling of status and "
              "batch progress, and static files); off")
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    serve(listen=args.listen, broker=args.broker, data_dir=args.data_dir, log_level=args.log_level,
          access_log=args.access_log,
          task_timeout_s=args.task_timeout_s, broker_check_timeout_s=args.broker_check_timeout_s,
          heartbeat_interval_s=args.heartbeat_interval_s,
          max_upload_bytes=args.max_upload_mb * MIB, max_batch_files=args.max_batch_files,
          quota_bytes=args.quota_mb * MIB, retention_days=args.retention_days,
          retention_jobs=args.retention_jobs, max_in_flight=args.max_in_flight,
          login_fails_per_account=args.login_fails_per_account,
          login_fails_per_address=args.login_fails_per_address, login_fail_window_s=args.login_fail_window_s,
          max_concurrent_hashes=args.max_concurrent_hashes, secure_cookies=args.secure_cookies,
          header_timeout_s=args.header_timeout_s, keep_alive_s=args.keep_alive_s,
          max_connections=args.max_connections, listen_backlog=args.listen_backlog)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
