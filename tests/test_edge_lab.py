"""The edge lab (tools/edgelab): it builds hosts as network namespaces with shaped links,
tears everything down (also when its process gets SIGTERM or SIGKILL), and a batch over
a shaped link loses nothing. Needs root, iproute2, nftables and ping; skipped otherwise."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tools/ is not an installed package (bare `pytest` does not add the root)
from tools.edgelab import netns, probe  # noqa: E402
from tools.edgelab.lab import Lab  # noqa: E402
from tools.edgelab.links import PROFILES  # noqa: E402
from tools.edgelab.runner import run_scenario  # noqa: E402
from tools.edgelab.scenarios import Scenario, WorkerSpec  # noqa: E402

WHY_NOT = netns.check_root()
pytestmark = [pytest.mark.skipif(WHY_NOT is not None, reason=f"edge lab unavailable: {WHY_NOT}"),
              pytest.mark.timeout(150)]
HOLD_SCRIPT = """
import sys, time
from tools.edgelab.lab import Lab
from tools.edgelab.links import PROFILES
lab = Lab()
lab.add_host("a"); lab.add_host("b", PROFILES["4g"])
lab.spawn("a", [sys.executable, "-c", "import time; time.sleep(600)"], "sleeper")
print(" ".join(lab.namespaces()), flush=True)
time.sleep(600)
"""


def lab_namespaces(tag: str) -> list[str]:
    return [ns for ns in netns.namespaces() if ns.startswith(tag + "-")]


def test_lab_builds_shaped_hosts_and_tears_down_everything():
    with Lab() as lab:
        lab.add_host("a")
        lab.add_host("b", PROFILES["4g"])
        sleeper = lab.spawn("a", [sys.executable, "-c", "import time; time.sleep(600)"], "sleeper")
        rtt = probe.ping(lab.hosts["a"].ns, lab.addr("b"), count=20, interval_s=0.02)
        pids = lab.pids()
        tag = lab.tag
        assert len(lab_namespaces(tag)) == 3  # hub, a, b
        assert rtt["rtt_min_ms"] is not None and rtt["rtt_min_ms"] >= 35  # 60 +- 20 ms round trip (-5 ms slack)
        lab.link_down("b")
        assert probe.ping(lab.hosts["a"].ns, lab.addr("b"), count=3, interval_s=0.2)["loss_pct"] == 100
        lab.link_up("b")
        assert sleeper.pid in pids and len(pids) >= 2  # the sleeper and b's delay line
    assert lab_namespaces(tag) == []
    assert not [p for p in pids if netns.pid_alive(p) and not netns._zombie(p)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_lab_leaves_nothing_behind(sig):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        names = proc.stdout.readline().split()
        assert len(names) == 3, "the lab did not start"
        pids = [pid for ns in names for pid in netns.ns_pids(ns)]
        assert pids
        proc.send_signal(sig)
        proc.wait(30)
        # SIGTERM: the lab's handler kills them. SIGKILL: no handler runs; they die of their
        # parent-death signal. Either way, before anything else cleans up.
        deadline_s = time.monotonic() + 5
        while time.monotonic() < deadline_s and [p for p in pids if netns.pid_alive(p) and not netns._zombie(p)]:
            time.sleep(0.1)
        assert not [p for p in pids if netns.pid_alive(p) and not netns._zombie(p)]
        if sig == signal.SIGKILL:  # its namespaces are removed by the next run, or by `clean`
            netns.sweep()
        assert not [ns for ns in names if ns in netns.namespaces()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_batch_over_wifi_links_loses_nothing():
    sc = Scenario("test-wifi", "two workers behind Wi-Fi", (WorkerSpec("w1", "wifi"), WorkerSpec("w2", "wifi")),
                  "grayscale", tasks=60)
    rec = run_scenario(sc)
    r = rec["result"]
    assert (r["submitted"], r["completed"], r["failed"], r["lost"], r["wrong"]) == (60, 60, 0, 0, 0)
    assert rec["link_check"]["wifi"]["rtt_min_ms"] >= 12  # 20 +- 5 ms round trip
