"""Real brokers and workers in real processes, on free loopback ports, for any test (the
fixtures built on them are in conftest.py; tests import these by name, never conftest).

Every helper here has a timeout; nothing waits forever. Heartbeats run at
``FAST_HEARTBEAT_S`` so that failure detection takes a second or two, not six.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

DATA = Path(__file__).parent / "data"
FAST_HEARTBEAT_S = 0.5
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_jpegs() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(DATA.glob("*.jpg"))}


class Proc:
    """A child process (broker or worker) that is always reaped."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        self.args = args
        # A file, not a pipe: a pipe nobody reads would fill and block the child. Read after the
        # child ends (stderr_text), so it lives as long as this object.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.popen = subprocess.Popen([sys.executable, *args], env={**os.environ, **(env or {})},
                                      stdout=subprocess.DEVNULL, stderr=self.log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)

    def stderr_text(self) -> str:
        """The process's log so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


class Cluster:
    """A broker (optionally with local workers) plus any number of extra workers."""

    def __init__(self, *, local_workers: int = 2, compat: bool = False, cache: bool = False,
                 extra: list[str] | None = None) -> None:
        self.local_workers = local_workers
        self.compat = compat
        self._pick_ports()
        # The result cache is off unless a test is about it: repeated photos must reach workers.
        self.extra = (extra or []) + ([] if cache else ["--cache-mb", "0"])
        self.broker: Proc | None = None
        self.workers: list[Proc] = []
        self.client_options: dict = {}  # defaults for client()

    def broker_args(self) -> list[str]:
        args = ["-m", "engine.broker", "--front", self.front, "--back", self.back,
                "--local-workers", str(self.local_workers), "--heartbeat-interval-s", str(FAST_HEARTBEAT_S),
                "--log-level", "info", *self.extra]
        if self.compat:
            args += ["--compat"] + [x for k, port in self.compat_ports.items()
                                    for x in (f"--compat-{k}", f"tcp://127.0.0.1:{port}")]
        return args

    def _pick_ports(self) -> None:
        self.front_port, self.back_port = free_port(), free_port()
        self.front = f"tcp://127.0.0.1:{self.front_port}"
        self.back = f"tcp://127.0.0.1:{self.back_port}"
        self.compat_ports = {k: free_port() for k in ("pull", "push", "router")} if self.compat else {}

    def start_broker(self, *, wait_slots: int | None = None) -> Cluster:
        for attempt in range(3):
            self.broker = Proc(self.broker_args())
            try:
                # Each local pool process registers on its own, with 1 + prefetch (1) slots.
                self.wait_ready(self.local_workers * 2 if wait_slots is None else wait_slots)
                return self
            except RuntimeError as exc:
                # A port free_port() saw free was taken meanwhile (the suite opens thousands
                # of connections, each on an ephemeral port): pick others and start again.
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise
                self.broker.stop()
                self._pick_ports()
        return self

    def add_worker(self, processes: int = 1, *extra: str) -> Proc:
        worker = Proc(["-m", "engine.worker", "--connect", self.back, "--processes", str(processes),
                       "--heartbeat-interval-s", str(FAST_HEARTBEAT_S), "--log-level", "info", *extra])
        self.workers.append(worker)
        return worker

    def info(self, timeout_s: float = 5.0) -> dict:
        from engine import Client

        with Client(self.front, timeout_s=timeout_s, heartbeat_interval_s=FAST_HEARTBEAT_S) as client:
            return client.info(timeout_s)

    def wait_ready(self, slots: int, timeout_s: float = START_TIMEOUT_S) -> dict:
        """Wait until the broker answers and its workers offer ``slots`` free slots in all."""
        deadline_s = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline_s:
            if self.broker is not None and not self.broker.alive():
                raise RuntimeError(f"broker exited: {self.broker.stderr_text()[-2000:]}")
            try:
                info = self.info(timeout_s=2.0)
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.1)
                continue
            last = info
            if sum(w["free"] for w in info["workers"]) >= slots:
                return info
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ready with {slots} slot(s) within {timeout_s} s; last: {last!r}")

    def client(self, **kwargs):
        from engine import Client

        kwargs = {"timeout_s": 60.0, "heartbeat_interval_s": FAST_HEARTBEAT_S, **self.client_options, **kwargs}
        return Client(self.front, **kwargs)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.broker is not None:
            self.broker.stop()


def recv_within(sock: zmq.Socket, timeout_s: float = 10.0) -> list[bytes]:
    """One multipart message, or AssertionError after ``timeout_s``."""
    assert sock.poll(int(timeout_s * 1000)), f"nothing received within {timeout_s} s"
    return sock.recv_multipart()
