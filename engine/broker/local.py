"""``--local-workers N``: one worker supervisor with N processes, started beside the broker."""
from __future__ import annotations

import logging
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


class LocalWorkers:
    """Runs ``python -m engine.worker`` as a child and restarts it if it dies.

    The watching thread owns no socket: it only waits on the child process.
    """

    def __init__(self, connect: str, processes: int, *, extra_args: list[str] | None = None) -> None:
        self.cmd = [sys.executable, "-m", "engine.worker", "--connect", connect, "--processes", str(processes),
                    *(extra_args or [])]
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="local-workers", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(self.cmd)
        log.info("started local worker supervisor pid %d: %s", self._proc.pid, " ".join(self.cmd[1:]))

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started_s = time.monotonic()
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            failures = 0 if time.monotonic() - started_s > 30 else failures + 1
            delay_s = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            log.warning("local worker supervisor exited with code %s; restarting in %.1f s", code, delay_s)
            if self._stopping.wait(delay_s):
                return
            self._spawn()

    def stop(self) -> None:
        """SIGTERM the supervisor (it drains its tasks), then wait; kill if it does not end."""
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("local worker supervisor did not stop in %.0f s; killing it", STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()
