"""bench/http_peers.py run for real on a few requests: real broker, workers, web gateway and
(when installed) thumbor processes, driven over loopback HTTP.

Speed is never asserted (STYLE: speed is measured in bench/); only that every request was
answered, the answers are JPEGs that fit the box, and nothing the run started is left behind.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 60
BOX_PX = 512
REQUESTS = 12
NOT_INSTALLED = "thumbor is not installed (pip install thumbor)"
# Runs the script with thumbor unimportable (importlib.util.find_spec answers None for a module
# whose sys.modules entry is None), as on a machine where it is not installed.
WITHOUT_THUMBOR = ("import runpy, sys; sys.modules['thumbor'] = None; sys.argv[0] = 'bench/http_peers.py'; "
                   "runpy.run_path('bench/http_peers.py', run_name='__main__')")


def _run(tmp_path: Path, *args: str, hide_thumbor: bool = False) -> tuple[dict, str]:
    script = ["-c", WITHOUT_THUMBOR] if hide_thumbor else [str(REPO / "bench" / "http_peers.py")]
    cmd = [sys.executable, *script, "--requests", str(REQUESTS), "--concurrency", "2", "--warmup", "2",
           "--out", str(tmp_path), *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    (path,) = tmp_path.glob("*.json")
    return json.loads(path.read_text()), proc.stderr


def _assert_ran_and_fit(peer: dict) -> None:
    assert peer["status"] == "ran", peer.get("reason")
    (run,) = peer["runs"]
    assert run["requests"] == REQUESTS and run["ok"] == REQUESTS and run["errors"] == 0, run["first_errors"]
    assert run["statuses"] == {"200": REQUESTS}
    assert run["requests_per_s"] > 0 and run["out_bytes_mean"] > 0
    lat = run["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    for check in peer["checks"]:
        assert check["ok"] and check["jpeg"] and check["content_type"] == "image/jpeg", check
        width, height = check["got"]
        assert width <= BOX_PX and height <= BOX_PX and BOX_PX in (width, height), check
        assert check["psnr_db"] >= 30, check


def _left_behind(command: list[str]) -> list[psutil.Process]:
    """Live processes started by this exact command line (the peer's leader and its forks)."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == command and proc.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(proc)
    return out


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_engine_http_answers_every_request_with_a_jpeg_in_the_box_even_without_thumbor(tmp_path):
    result, stderr = _run(tmp_path, "--peers", "engine,thumbor", hide_thumbor=True)
    assert f"skip thumbor: {NOT_INSTALLED}" in stderr
    assert result["peers"]["thumbor"] == {"status": "skipped", "reason": NOT_INSTALLED}
    engine = result["peers"]["engine"]
    _assert_ran_and_fit(engine)
    assert result["ratios"] == [] and result["fingerprint"]["usable_cores"] >= 1
    assert all(img["width"] == 2048 or img["height"] == 2048 for img in result["images"])
    assert not _left_behind(engine["command"])


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.skipif(importlib.util.find_spec("thumbor") is None, reason=NOT_INSTALLED)
def test_thumbor_and_engine_answer_the_same_sizes(tmp_path):
    result, _stderr = _run(tmp_path, "--peers", "engine,thumbor")
    engine, thumbor = result["peers"]["engine"], result["peers"]["thumbor"]
    _assert_ran_and_fit(engine)
    _assert_ran_and_fit(thumbor)
    assert [c["got"] for c in engine["checks"]] == [c["got"] for c in thumbor["checks"]]
    (ratio,) = result["ratios"]
    assert ratio["concurrency"] == 2 and ratio["requests_per_s"] > 0
    assert not _left_behind(engine["command"]) and not _left_behind(thumbor["command"])
