"""Celery with a real Redis (broker and result backend), started and stopped by the harness."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..measure import TASK_TIMEOUT_S
from .base import Peer, Skip, free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


def start_redis() -> tuple[subprocess.Popen, str]:
    """A throw-away redis-server on a free loopback port, no persistence; (process, URL)."""
    import redis

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--loglevel", "warning"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return proc, f"redis://127.0.0.1:{port}/0"
        except redis.RedisError:
            time.sleep(0.1)
    proc.kill()
    raise Skip(f"redis-server did not answer on port {port} in {START_TIMEOUT_S:.0f} s")


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Celery(Peer):
    name = "celery"
    label = "Celery + Redis (prefork pool, msgpack)"
    modules = ("celery", "redis")

    def missing(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server not found (Debian: apt-get install redis-server)"
        return super().missing()

    def start(self) -> None:
        from .celery_app import TASK_NAME, make_app

        self._redis = self._worker = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the worker's log for its life; closed in stop()
        self._redis, url = start_redis()
        env = dict(os.environ, BENCH_REDIS_URL=url,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker", "--concurrency",
             str(self.workers), "--pool", "prefork", "-O", "fair", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "WARNING"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
            stderr=self._log)  # Celery warns at length about running as root; kept for failures
        self._app = make_app(url)
        self._task = TASK_NAME
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._worker.poll() is not None:
                raise Skip(f"the Celery worker exited with code {self._worker.returncode} while starting: "
                           f"{self._log_tail()}")
            if self._app.control.ping(timeout=0.5):
                return
        raise Skip(f"the Celery worker did not answer a ping in {START_TIMEOUT_S:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-300:].decode(errors="replace").strip()

    def stop(self) -> None:
        stop_process(getattr(self, "_worker", None))
        stop_process(getattr(self, "_redis", None))

    def roles(self) -> dict[str, list[int]]:
        return {"workers": [self._worker.pid], "broker": [self._redis.pid], "client": [os.getpid()]}

    def submit(self, data: bytes, pipeline: str):
        return self._app.send_task(self._task, args=(data, pipeline))

    def wait_some(self, handles: list) -> list:
        """The oldest task's result (AsyncResult.get over the Redis result channel).

        One thread owns the app's result consumer, so results are read in submission order;
        a task that finished early is counted when its turn comes (its latency is then
        a little longer than it was, never shorter).
        """
        oldest = handles[0]
        try:
            out, meta = oldest.get(timeout=TASK_TIMEOUT_S)
            return [(oldest, (out, meta))]
        except Exception as exc:
            return [(oldest, exc)]

    def notes(self) -> list[str]:
        return [f"celery worker --concurrency {self.workers} --pool prefork -O fair, Redis broker and result "
                "backend on loopback, send_task with a bounded window, results read oldest first"]
