"""Run one scenario in a fresh lab: build the hosts, start broker, workers and the
driving client, fire the timed events, collect the counts, tear everything down.
"""
from __future__ import annotations

import datetime
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import ConfigError

from . import probe
from .lab import REPO, Lab, _readline_within
from .links import PROFILES
from .scenarios import Event, Scenario

RESULTS = REPO / "bench" / "results" / "edge"
FRONT_PORT, BACK_PORT = 5555, 5556
START_TIMEOUT_S = 90.0  # workers registered and the client ready
CHECK_PINGS = 50  # a quick check of each shaped link before the batch
PY = sys.executable


def run_scenario(sc: Scenario, *, tasks: int | None = None, task_timeout_s: float = 120.0) -> dict:
    tasks = tasks or sc.tasks
    load_before = os.getloadavg()
    with Lab() as lab:
        lab.add_host("broker")
        lab.add_host("client")
        for w in sc.workers:
            lab.add_host(w.host, PROFILES[w.link])
        front = f"tcp://{lab.addr('broker')}:{FRONT_PORT}"
        back = f"tcp://{lab.addr('broker')}:{BACK_PORT}"

        def start_broker() -> None:
            lab.spawn("broker", [PY, "-m", "engine.broker", "--public", "--front", f"tcp://*:{FRONT_PORT}",
                                 "--back", f"tcp://*:{BACK_PORT}", "--local-workers", "0", "--cache-mb", "0",
                                 "--log-level", "warning"], "broker")

        start_broker()
        for w in sc.workers:
            # --test-ops: the test-only 'sleep' operation stands for device work
            lab.spawn(w.host, [PY, "-m", "engine.worker", "--connect", back, "--processes", "1", "--test-ops",
                               "--log-level", "warning"], f"worker-{w.host}", cpu_pct=w.cpu_pct)
        links = {}
        for w in sc.workers:
            if w.link != "lan" and w.link not in links:
                links[w.link] = probe.ping(lab.hosts["broker"].ns, lab.addr(w.host), count=CHECK_PINGS)
        driver = lab.spawn("client", [PY, "-m", "tools.edgelab.drive", "--connect", front, "--tasks", str(tasks),
                                      "--pipeline", sc.pipeline, "--window", str(sc.window),
                                      "--width-px", str(sc.width_px),
                                      "--wait-workers", str(len(sc.workers)), "--timeout-s", str(task_timeout_s)],
                           "driver", stdout=subprocess.PIPE)
        if _readline_within(driver, START_TIMEOUT_S).strip() != "go":
            raise ConfigError(f"scenario {sc.name}: the client did not start; see the logs in {lab.log_dir}")
        fired: list[dict] = []
        actions = {"down": lab.link_down, "up": lab.link_up,
                   "broker_down": lambda _h: (lab.link_down("broker"), lab.kill_host_processes("broker")),
                   "broker_up": lambda _h: (lab.link_up("broker"), start_broker())}
        line = _run_events(driver, sc.events, actions, fired, tasks * 2.0 + task_timeout_s + 60)
        if not line.strip():
            raise ConfigError(f"scenario {sc.name}: the client gave no result; see {lab.log_dir}/driver.log")
        result = json.loads(line)
        result["workers"] = {_where(name, lab): v for name, v in result["workers"].items()}
        log_dir = str(lab.log_dir)
    return {
        "scenario": sc.name, "summary": sc.summary, "pipeline": sc.pipeline, "tasks": tasks,
        "width_px": sc.width_px,
        "workers": [w.__dict__ for w in sc.workers], "link_check": links, "events_fired": fired,
        "result": result, "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "logs": log_dir,
    }


def _run_events(driver, events: tuple[Event, ...], actions: dict, fired: list, timeout_s: float) -> str:
    """Fire each event at its time while waiting for the driver's result line; returns it.

    Events run in this (the main) thread: a child's parent-death signal fires when the
    thread that started it ends, so a broker restarted from a short-lived thread would die.
    """
    start_s = time.monotonic()
    pending = sorted(events, key=lambda e: e.at_s)
    while time.monotonic() - start_s < timeout_s:
        wait_s = (start_s + pending[0].at_s - time.monotonic()) if pending else 1.0
        if wait_s > 0:
            if select.select([driver.stdout], [], [], min(wait_s, 1.0))[0]:
                return driver.stdout.readline()
            if driver.poll() is not None:
                return driver.stdout.read() or ""
            continue
        ev = pending.pop(0)
        actions[ev.action](ev.host)
        fired.append({"action": ev.action, "host": ev.host, "at_s": round(time.monotonic() - start_s, 2)})
    return ""


def _where(worker_name: str, lab: Lab) -> str:
    """'hostname:pid' (the engine's worker name) as the lab host that pid runs in."""
    pid = worker_name.rsplit(":", 1)[-1]
    out = subprocess.run(["ip", "netns", "identify", pid], capture_output=True, text=True).stdout.strip()
    for host in lab.hosts.values():
        if out == host.ns:
            return host.name
    return worker_name


def save(record: dict, *, suffix: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{record['scenario']}{suffix}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


COLUMNS = ("scenario", "images/s", "p50 ms", "p99 ms", "submitted", "completed", "failed", "lost", "wrong",
           "duplicated", "batch s", "load 1m")


def table(records: list[dict]) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for rec in records:
        r = rec["result"]
        cells = (rec["scenario"], r["images_per_s"], r["p50_ms"], r["p99_ms"], r["submitted"], r["completed"],
                 r["failed"], r["lost"], r["wrong"], r["duplicated"], r["batch_s"],
                 f"{rec['loadavg_before'][0]}-{rec['loadavg_after'][0]}")
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)
