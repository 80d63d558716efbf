"""Thin wrappers over ``ip``, ``tc`` and ``nft``: namespaces, links, qdiscs, firewall rules.

Every name the lab creates starts with ``PREFIX`` followed by the owning process id
(``elab12345-hub``), so a sweep can tell a crashed run's leftovers (owner dead) from a
live lab's. Interfaces live only inside the lab's namespaces, never in the caller's:
deleting a namespace deletes its interfaces.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from engine.errors import ConfigError

PREFIX = "elab"
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")
COMMAND_TIMEOUT_S = 20.0


def sh(*args: str, input: str | None = None, check: bool = True) -> str:
    """Run one command; its stdout, or ConfigError with its stderr."""
    try:
        done = subprocess.run(args, input=input, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise ConfigError(f"{args[0]} is missing: apt-get install iproute2 nftables iputils-ping") from None
    if check and done.returncode != 0:
        raise ConfigError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def check_root() -> str | None:
    """None when the lab can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the edge lab needs root (network namespaces, TAP devices, tc, nft)"
    for tool in ("ip", "tc", "nft", "ping", "setpriv"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            return f"{tool} is missing: apt-get install iproute2 nftables iputils-ping"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (TAP devices for shaped links)"
    return None


def namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ns_pids(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_pids(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    """SIGKILL each pid (stopped ones too), wait until they are gone; returns survivors."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline_s = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline_s:
        for pid in list(alive):
            try:  # reap our own children; others are reaped by init
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not pid_alive(pid) or _zombie(pid):
                alive.remove(pid)
        time.sleep(0.02)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_namespace(ns: str) -> None:
    """Kill every process in ``ns``, then delete it (and with it every interface inside)."""
    survivors = kill_pids(ns_pids(ns))
    if survivors:
        raise ConfigError(f"processes {survivors} in namespace {ns} survived SIGKILL")
    sh("ip", "netns", "del", ns, check=False)


def owner_of(name: str) -> int | None:
    m = _OWNED.match(name)
    return int(m.group(1)) if m else None


def sweep(*, everything: bool = False) -> list[str]:
    """Remove lab namespaces and cgroups whose owner process is dead (all of them with
    ``everything``); returns what was removed."""
    removed = []
    for ns in namespaces():
        owner = owner_of(ns)
        if owner is not None and (everything or not pid_alive(owner)):
            remove_namespace(ns)
            removed.append(f"netns {ns}")
    if CGROUP_CPU.is_dir():
        for cg in CGROUP_CPU.glob(f"{PREFIX}*"):
            owner = owner_of(cg.name)
            if owner is not None and (everything or not pid_alive(owner)):
                remove_cgroup(cg)
                removed.append(f"cgroup {cg}")
    return removed


def make_cgroup(name: str, cpu_pct: float) -> Path:
    """A cgroup-v1 CPU group limited to ``cpu_pct`` % of one CPU."""
    cg = CGROUP_CPU / name
    cg.mkdir(exist_ok=True)
    period_us = int((cg / "cpu.cfs_period_us").read_text())
    (cg / "cpu.cfs_quota_us").write_text(str(max(1000, int(period_us * cpu_pct / 100))))
    return cg


def remove_cgroup(cg: Path) -> None:
    procs = [int(p) for p in (cg / "cgroup.procs").read_text().split()] if cg.exists() else []
    kill_pids(procs)
    deadline_s = time.monotonic() + 5
    while cg.exists():
        try:
            cg.rmdir()
        except OSError:
            if time.monotonic() > deadline_s:
                raise ConfigError(f"cgroup {cg} could not be removed (processes still in it?)") from None
            time.sleep(0.05)


def nft(ns: str, script: str) -> None:
    sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=script)


def tbf(ns: str, dev: str, rate_mbit: float, queue_ms: float) -> None:
    """Pace ``dev``'s egress to ``rate_mbit`` with a queue of ``queue_ms`` at that rate."""
    burst_bytes = max(3200, int(rate_mbit * 1e6 / 8 / 250))  # 4 ms worth, at least two frames
    sh("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
       "rate", f"{rate_mbit}mbit", "burst", str(burst_bytes), "latency", f"{queue_ms}ms")
