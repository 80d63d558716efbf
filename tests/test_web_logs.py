"""The web gateway's log, as a person running it reads it: the engine's format, one access
line per request, and nothing for the pages' own polling unless asked."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from cluster_helpers import free_port

pytestmark = pytest.mark.timeout(90)
ENGINE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) +[\w.]+: ")
START_TIMEOUT_S = 30.0


def run_gateway(broker_front: str, data_dir, *extra: str, also: tuple = ()) -> tuple[str, str]:
    """Start python -m engine.web, visit a page, poll the status like the page does, stop it;
    returns (stdout, stderr)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.web", "--listen", f"127.0.0.1:{port}", "--broker",
                             broker_front, "--data-dir", str(data_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline_s or proc.poll() is not None:
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/login").status_code == 200
            for path in also:
                http.get(path)
            for _ in range(3):
                http.get("/api/v1/status")
            http.get("/static/style.css")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    return out, err


def test_access_log_is_in_the_engine_format_and_quiet_for_polling(broker, tmp_path):
    out, err = run_gateway(broker.front, tmp_path)
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines and all(ENGINE_LINE.match(x) for x in lines), err
    access = [x for x in lines if " engine.web.access: " in x]
    assert len(access) == 1 and re.search(r"GET /login 200 [\d.]+ ms [\d.]+ (B|KiB) from 127\.0\.0\.1$", access[0])
    assert "/api/v1/status" not in err and "/static/" not in err
    assert out == "" and "uvicorn.error" not in err and " engine.web: Started server process" in err


def test_access_log_all_shows_the_polling_too(broker, tmp_path):
    _out, err = run_gateway(broker.front, tmp_path, "--access-log", "all")
    assert err.count("GET /api/v1/status 401") == 3 and "GET /static/style.css 200" in err


def test_a_request_path_cannot_forge_a_log_line(broker, tmp_path):
    forged = "2026-01-01 00:00:00,000 WARNING engine.broker: forged"
    _out, err = run_gateway(broker.front, tmp_path,
                            also=("/x%0A" + forged.replace(" ", "%20") + "%0D%1B[31m",))
    lines = [x for x in err.splitlines() if x.strip()]
    assert all(ENGINE_LINE.match(x) for x in lines), err  # no line starts where the path wanted one
    assert not any(x.startswith("2026-01-01") for x in lines)
    assert "/x\\n2026-01-01" in err and "\\x1b[31m" in err, err
