"""The lab: N emulated hosts as network namespaces on one bridge, each behind its own
link, with processes started inside them, and a teardown that always runs.

    with Lab() as lab:
        lab.add_host("broker")                      # a LAN link
        lab.add_host("w1", PROFILES["4g"])          # 10 Mbit/s, 60 +- 20 ms, 2 % loss
        lab.spawn("broker", ["python", "-m", "engine.broker", "--public"])
        lab.link_down("w1"); lab.link_up("w1")

Topology: a hub namespace holds the bridge ``br0``. A LAN host is a veth pair (``eth0``
in the host, a bridge port in the hub). A shaped host is two TAP devices joined by a
delay line process (``shim.py``) in the hub, with ``tbf`` on both TAP devices for the
bandwidth. Link down/up is an nftables rule in the host that drops everything on
``eth0`` (the host's kernel sees no carrier change, as when a radio link fades).

Teardown (``close``, also from ``__exit__``, SIGTERM, SIGHUP, SIGINT and ``atexit``)
SIGKILLs every process in the lab's namespaces, deletes the namespaces and the CPU
cgroups; a later run (or ``python -m tools.edgelab clean``) removes what a SIGKILLed
run left, recognised by the dead owner pid in the names.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError

from . import netns
from .links import LinkSpec

SUBNET = "10.77.0"
FIRST_HOST = 10
REPO = Path(__file__).resolve().parents[2]
# Every child gets SIGKILL if the lab process dies, even by SIGKILL (setpriv, not a
# preexec_fn: that can deadlock when a timer thread starts a process).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"]
SHIM_START_TIMEOUT_S = 10.0
TBF_QUEUE_MS = 100.0  # bandwidth queue per direction (a modest radio-link buffer)


@dataclass
class Host:
    name: str
    ns: str
    addr: str
    link: LinkSpec
    down: bool = False
    procs: list = field(default_factory=list)


class Lab:
    def __init__(self, *, log_dir: Path | None = None) -> None:
        reason = netns.check_root()
        if reason:
            raise ConfigError(reason)
        netns.sweep()  # leftovers of crashed runs (their owner pid is dead)
        self.tag = f"{netns.PREFIX}{os.getpid()}"
        self.hub = f"{self.tag}-hub"
        self.hosts: dict[str, Host] = {}
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"{self.tag}-logs-"))
        self._children: list[subprocess.Popen] = []
        self._cgroups: list[Path] = []
        self._closed = False
        self._lock = threading.Lock()
        self._old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        atexit.register(self.close)
        try:
            netns.sh("ip", "netns", "add", self.hub)
            netns.sh("ip", "-n", self.hub, "link", "set", "lo", "up")
            netns.sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
            netns.sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    # ---- building ----------------------------------------------------------------------
    def add_host(self, name: str, link: LinkSpec | None = None) -> Host:
        """A namespace with ``eth0`` at 10.77.0.N/24 on the bridge, behind ``link``."""
        if len(name) > 12 or not name.isalnum():
            raise ConfigError(f"host name {name!r}: use up to 12 letters and digits")
        link = link or LinkSpec()
        host = Host(name, f"{self.tag}-{name}", f"{SUBNET}.{FIRST_HOST + len(self.hosts)}", link)
        self.hosts[name] = host
        netns.sh("ip", "netns", "add", host.ns)
        netns.sh("ip", "-n", host.ns, "link", "set", "lo", "up")
        if link.needs_shim:
            self._shaped_port(host)
        else:
            netns.sh("ip", "-n", self.hub, "link", "add", f"v-{name}", "type", "veth",
                     "peer", "name", "eth0", "netns", host.ns)
            netns.sh("ip", "-n", self.hub, "link", "set", f"v-{name}", "master", "br0", "up")
        netns.sh("ip", "-n", host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
        netns.sh("ip", "-n", host.ns, "link", "set", "eth0", "up")
        port = f"t-{name}" if link.needs_shim else f"v-{name}"
        if link.rate_mbit:
            netns.tbf(host.ns, "eth0", link.rate_mbit, TBF_QUEUE_MS)
            netns.tbf(self.hub, port, link.rate_mbit, TBF_QUEUE_MS)
        netns.nft(host.ns, "table inet edgelab {\n"
                           " chain input { type filter hook input priority 0; }\n"
                           " chain output { type filter hook output priority 0; }\n}\n")
        return host

    def _shaped_port(self, host: Host) -> None:
        hub_tap, host_tap = f"t-{host.name}", f"x-{host.name}"
        for tap in (hub_tap, host_tap):
            netns.sh("ip", "-n", self.hub, "tuntap", "add", "dev", tap, "mode", "tap")
        link = host.link
        shim = self._popen(self.hub, [sys.executable, "-m", "tools.edgelab.shim", "--hub-tap", hub_tap,
                                      "--host-tap", host_tap, "--delay-ms", str(link.delay_ms / 2),
                                      "--jitter-ms", str(link.jitter_ms / 2),
                                      "--loss-pct", str(link.loss_per_direction_pct)],
                           f"shim-{host.name}", stdout=subprocess.PIPE)
        line = _readline_within(shim, SHIM_START_TIMEOUT_S)
        if line.strip() != "ready":
            raise ConfigError(f"the delay line of {host.name} did not start; see {self.log_dir}/shim-{host.name}.log")
        netns.sh("ip", "-n", self.hub, "link", "set", host_tap, "netns", host.ns)
        netns.sh("ip", "-n", host.ns, "link", "set", host_tap, "name", "eth0")
        netns.sh("ip", "-n", self.hub, "link", "set", hub_tap, "master", "br0", "up")

    # ---- processes ---------------------------------------------------------------------
    def spawn(self, host: str, argv: list[str], label: str, *, env: dict | None = None,
              cpu_pct: float | None = None, stdout=None) -> subprocess.Popen:
        """Start ``argv`` inside ``host`` (cwd: the repository), logging to ``label``.log.
        ``cpu_pct`` confines it and its children to that share of one CPU (a cgroup). Call it
        from a thread that outlives the child: the child is killed when that thread ends."""
        proc = self._popen(self.hosts[host].ns, argv, label, env=env, stdout=stdout,
                           cgroup=self._cgroup(label, cpu_pct) if cpu_pct else None)
        self.hosts[host].procs.append(proc)
        return proc

    def kill_host_processes(self, host: str) -> None:
        """SIGKILL everything running in ``host`` (a power cut)."""
        h = self.hosts[host]
        netns.kill_pids(netns.ns_pids(h.ns))
        for p in h.procs:
            p.poll()
        h.procs = [p for p in h.procs if p.returncode is None]

    def _cgroup(self, label: str, cpu_pct: float) -> Path:
        cg = netns.make_cgroup(f"{self.tag}-{label}", cpu_pct)
        self._cgroups.append(cg)
        return cg

    def _popen(self, ns: str, argv: list[str], label: str, *, env: dict | None = None, stdout=None,
               cgroup: Path | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{label}.log", "ab")  # noqa: SIM115 - the child's; closed when it is reaped
        cmd = [*DIE_WITH_PARENT, "ip", "netns", "exec", ns, *argv]
        if cgroup is not None:  # join the cgroup, then exec: every child inherits it
            cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *cmd]
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=stdout or log, stderr=log,
                                text=stdout is not None)
        log.close()
        self._children.append(proc)
        return proc

    # ---- link events -------------------------------------------------------------------
    def link_down(self, host: str) -> None:
        """Drop every packet to and from ``host`` until ``link_up``."""
        ns = self.hosts[host].ns
        netns.nft(ns, 'add rule inet edgelab input iifname "eth0" drop\n'
                      'add rule inet edgelab output oifname "eth0" drop\n')
        self.hosts[host].down = True

    def link_up(self, host: str) -> None:
        ns = self.hosts[host].ns
        netns.nft(ns, "flush chain inet edgelab input\nflush chain inet edgelab output\n")
        self.hosts[host].down = False

    def addr(self, host: str) -> str:
        return self.hosts[host].addr

    def pids(self) -> list[int]:
        """Every process now running in the lab's namespaces."""
        return [pid for ns in self.namespaces() for pid in netns.ns_pids(ns)]

    def namespaces(self) -> list[str]:
        return [self.hub, *(h.ns for h in self.hosts.values())]

    # ---- teardown ----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        errors = []
        for ns in reversed([ns for ns in self.namespaces() if ns in netns.namespaces()]):
            try:
                netns.remove_namespace(ns)
            except Exception as exc:  # keep going: remove everything we can
                errors.append(str(exc))
        netns.kill_pids([p.pid for p in self._children if p.poll() is None])
        for p in self._children:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                errors.append(f"process {p.pid} did not exit")
            if p.stdout:
                p.stdout.close()
        for cg in self._cgroups:
            try:
                netns.remove_cgroup(cg)
            except Exception as exc:
                errors.append(str(exc))
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        atexit.unregister(self.close)
        if errors:
            raise ConfigError("teardown incomplete: " + "; ".join(errors) + " (run: python -m tools.edgelab clean)")

    def _on_signal(self, signum, frame) -> None:
        self.close()
        raise SystemExit(128 + signum)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _readline_within(proc: subprocess.Popen, timeout_s: float) -> str:
    """One line of ``proc``'s stdout, or '' after ``timeout_s`` or at its exit."""
    import select

    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            return proc.stdout.readline()
        if proc.poll() is not None:
            return ""
    return ""
