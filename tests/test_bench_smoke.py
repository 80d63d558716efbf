"""The benchmark harness, run for real on a tiny workload: the result it writes is complete.

Speed is never asserted here (STYLE: speed is measured in bench/, not in tests); only
that every figure is present, positive and consistent.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import Settings, run_peer  # noqa: E402
from bench.peers.base import Peer  # noqa: E402

RUN_TIMEOUT_S = 90


def _run_bench(tmp_path: Path, *args: str) -> dict:
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--out", str(tmp_path), "--target", "smoke", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, (files, proc.stderr[-2000:])
    return json.loads(files[0].read_text())


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_run_writes_a_complete_result_for_limit_pool_and_engine(tmp_path):
    result = _run_bench(tmp_path, "--quick", "--workers", "1", "--peers", "limit,mp_pool,engine",
                        "--workloads", "grayscale", "--duration-s", "0.3")
    assert result["target"] == "smoke" and result["mode"] == "quick"
    fp = result["fingerprint"]
    assert fp["usable_cores"] >= 1 and fp["cpu_model"] and fp["versions"]["pyzmq"] != "unknown"
    assert {p: s["status"] for p, s in result["peers"].items()} == {"limit": "ran", "mp_pool": "ran", "engine": "ran"}
    rows = {r["peer"]: r for r in result["results"]}
    assert set(rows) == {"limit", "mp_pool", "engine"}
    for peer, r in rows.items():
        assert r["workload"] == "grayscale" and r["size"] == "photo" and r["workers"] == 1
        assert r["tasks"] > 0 and r["errors"] == 0 and r["cache_hits"] == 0, (peer, r["first_error"])
        assert r["images_per_s"] > 0 and r["mp_per_s"] > 0 and r["out_bytes_mean"] > 0
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], (peer, lat)
        assert len(lat["quantiles"]) == 21
        assert r["cpu_cores"].get("workers", 0) > 0, (peer, r["cpu_cores"])
        assert r["ratio_to_engine"] > 0 and r["rounds"] == 1 and r["images_per_s_rounds"] == [r["images_per_s"]]
    assert rows["engine"]["ratio_to_engine"] == 1.0
    assert rows["engine"]["cpu_cores"]["broker"] > 0 and rows["engine"]["broker_cpu_us_per_task"] > 0
    assert result["peers"]["engine"]["round_trip"]["latency_ms_p50"] > 0
    cap = result["capacity"]
    for name in ("tiny_real", "echo_tiny", "echo_10mb"):
        assert cap[name]["tasks"] > 0 and cap[name]["errors"] == 0, cap[name]
        assert cap[name]["tasks_per_s"] > 0
    assert cap["echo_10mb"]["gb_per_s_through_broker"] > 0


def test_a_peer_that_is_not_installed_is_skipped_with_its_reason():
    class Absent(Peer):
        name = "absent"
        modules = ("no_such_module_for_the_bench",)

    class Lines:
        def __init__(self):
            self.lines = []

        def note(self, text, skipped=0):
            self.lines.append(text)

        def say(self, text, step=False):
            pass

    progress = Lines()
    status = run_peer(Absent(workers=1), [], {}, Settings(workers=1), progress, [])
    assert status["status"] == "skipped"
    assert "no_such_module_for_the_bench not installed" in status["reason"]
    assert progress.lines == [f"skip absent: {status['reason']}"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_report_turns_stored_results_into_tables_and_charts(tmp_path):
    from bench import report

    _run_bench(tmp_path / "smoke", "--quick", "--workers", "1", "--peers", "limit,engine", "--workloads", "grayscale",
               "--duration-s", "0.2", "--no-capacity")
    charts = importlib.util.find_spec("matplotlib") is not None
    assert report.main(["--results", str(tmp_path), *([] if charts else ["--no-charts"])]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "This engine" in text and "ratio to this engine" in text and "| grayscale | photo |" in text
    if charts:
        assert (tmp_path / "smoke" / "throughput_vs_workers.png").stat().st_size > 0
        assert (tmp_path / "smoke" / "latency.png").stat().st_size > 0
