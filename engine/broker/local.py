"""Processes started beside the broker and kept running: ``--local-workers N`` (one worker
supervisor with N pool processes) and ``--web`` (the web gateway)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

log = logging.getLogger("engine.broker.local")

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
STOP_TIMEOUT_S = 15.0


def connect_endpoint(bound: str) -> str:
    """The address a local process connects to, from the one the broker bound."""
    return (bound.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://*:", "tcp://127.0.0.1:")
            .replace("tcp://[::]:", "tcp://[::1]:"))


class Companion:
    """Runs ``python -m MODULE ARGS`` as a child and restarts it if it dies.

    The watching thread owns no socket: it only waits on the child process.
    """

    def __init__(self, module: str, args: list[str], *, name: str, env: dict[str, str | None] | None = None) -> None:
        self.cmd = [sys.executable, "-m", module, *args]
        self.name = name
        # Only this child's keys, never in the broker's environment; a None value removes a variable.
        merged = {**os.environ, **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, args=(self._spawn(),), name=self.name, daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        self._proc = proc = subprocess.Popen(self.cmd, env=self.env)
        log.info("started %s, pid %d: %s", self.name, proc.pid, " ".join(self.cmd[1:]))
        return proc

    def _watch(self, proc: subprocess.Popen) -> None:
        failures = 0
        while not self._stopping.is_set():
            started_s = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if code == 0:  # it stopped on purpose (SIGTERM, or Ctrl+C reaching the process group)
                log.info("%s exited cleanly; not restarting it", self.name)
                return
            failures = 0 if time.monotonic() - started_s > 30 else failures + 1
            delay_s = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            log.warning("%s exited with code %s; restarting in %.1f s", self.name, code, delay_s)
            if self._stopping.wait(delay_s):
                return
            proc = self._spawn()

    def stop(self) -> None:
        """SIGTERM the child (a worker drains its tasks), then wait; kill it if it does not end."""
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()


def local_workers(connect: str, processes: int, heartbeat_interval_s: float, *,
                  env: dict[str, str | None] | None = None) -> Companion:
    return Companion("engine.worker", ["--connect", connect, "--processes", str(processes),
                                       "--heartbeat-interval-s", str(heartbeat_interval_s)],
                     name="local worker supervisor", env=env)


def web_gateway(listen: str, broker: str, heartbeat_interval_s: float, *,
                env: dict[str, str | None] | None = None) -> Companion:
    # The gateway is a client: it follows the broker's heartbeat interval once the broker answers;
    # passing it on makes its first beats right too.
    return Companion("engine.web", ["--listen", listen, "--broker", broker,
                                    "--heartbeat-interval-s", str(heartbeat_interval_s)], name="web gateway",
                     env=env)
