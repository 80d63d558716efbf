"""This engine: a broker with local workers (or an existing deployment), driven by
``engine.Client`` from ``--clients`` processes, each with its share of the window."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from ..measure import drive, pick, wait_futures
from .base import Peer, Skip, free_port
from .gang import Gang

READY_TIMEOUT_S = 30.0
NO_CACHE = {"cache": False}  # every task is computed: the same images repeat, a cache would answer them
STOP_TIMEOUT_S = 20.0


def data_plane(info: dict) -> dict:
    """From a broker's INFO: which hot path it runs (compiled, python, off) and whether
    same-host payloads go through shared memory (the broker offers it: its local clients and
    pool processes use it for images of ``engine.shm.MIN_BYTES`` or more)."""
    hot = info.get("hot_path")
    kind = "off" if not hot else "compiled" if hot.get("compiled") else "python"
    return {"hot_path": kind, "shared_memory": bool(info.get("shared_memory"))}


class EngineDriver:
    """Runs inside each client process."""

    def __init__(self, endpoint: str, share: int, key_file: str | None = None,
                 broker_key_file: str | None = None) -> None:
        from engine import Client
        from engine.security import PeerKeys

        keys = PeerKeys.load(key_file, broker_key_file) if key_file else None
        self.client = Client(endpoint, timeout_s=120, keys=keys)
        self.share = share

    def measure(self, images, pipeline, *, window, duration_s, min_tasks):
        return drive(lambda i: self.client.submit(pick(images, i), pipeline, options=NO_CACHE), wait_futures,
                     window=max(1, window // self.share), duration_s=duration_s,
                     min_tasks=-(-min_tasks // self.share))

    def close(self) -> None:
        self.client.close()


def broker_ready(endpoint: str, slots: int, timeout_s: float = READY_TIMEOUT_S, *, key_file: str | None = None,
                 broker_key_file: str | None = None) -> dict:
    """Wait until the broker at ``endpoint`` has ``slots`` free worker slots; its INFO."""
    from engine import Client
    from engine.security import PeerKeys

    deadline = time.monotonic() + timeout_s
    info: dict = {}
    keys = PeerKeys.load(key_file, broker_key_file) if key_file else None
    with Client(endpoint, timeout_s=timeout_s, keys=keys) as client:
        while time.monotonic() < deadline:
            try:
                info = client.info(timeout_s=2.0)
            except Exception:
                continue
            if sum(w.get("free", 0) + w.get("in_flight", 0) for w in info.get("workers", [])) >= slots:
                return info
            time.sleep(0.1)
    raise Skip(f"the broker at {endpoint} did not report {slots} worker slot(s) in {timeout_s:.0f} s "
               f"(last INFO: {str(info)[:200]})")


def start_broker(local_workers: int, extra_flags: list[str]) -> tuple[subprocess.Popen, str, str]:
    """``python -m engine.broker`` on free loopback ports: the process, front and back endpoints."""
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "engine.broker", "--front", front, "--back", back,
           "--local-workers", str(local_workers), "--cache-mb", "0", *extra_flags]
    env = dict(os.environ, ENGINE_LOG_LEVEL="warning")  # the worker it starts reads this too
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env), front, back


class Engine(Peer):
    name = "engine"
    label = "this engine (msgpack frames, engine.Client)"
    modules = ("zmq", "engine.broker", "engine.client")
    driver = "bench.peers.engine:EngineDriver"

    def _extra_flags(self) -> list[str]:
        return []

    def _client_endpoint(self) -> str:
        return self.front

    def _driver_options(self) -> dict:
        return {}

    remote_slots = 0

    data_plane: dict | None = None  # what the broker ran: its hot path, shared memory

    def start(self) -> None:
        self._broker = None
        self._gang = None
        if self.broker:
            self.front = self.broker
            info = broker_ready(self.front, 1)
            self.data_plane = data_plane(info)
            self.remote_slots = sum(w.get("free", 0) + w.get("in_flight", 0) for w in info.get("workers", []))
        else:
            self._broker, self.front, self.back = start_broker(self.workers, self._extra_flags())
            self._start_workers()
            info = broker_ready(self.front, self.workers, **self._driver_options())
            self.data_plane = data_plane(info)
        self._gang = Gang(self.clients, self.driver, endpoint=self._client_endpoint(), share=self.clients,
                          **self._driver_options())
        self._gang.start()

    def _start_workers(self) -> None:
        pass  # the broker's --local-workers did it

    def stop(self) -> None:
        if self._gang:
            self._gang.stop()
        if self._broker and self._broker.poll() is None:
            self._broker.terminate()
            try:
                self._broker.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._broker.kill()
                self._broker.wait()

    def roles(self) -> dict[str, list[int]]:
        clients = self._gang.pids() if self._gang else []
        if not self._broker:
            return {"client": clients}  # a remote deployment: its CPU is not ours to see
        import psutil

        try:
            supervisors = [c.pid for c in psutil.Process(self._broker.pid).children()]
            pool = [p.pid for s in supervisors for p in psutil.Process(s).children()
                    if "resource_tracker" not in " ".join(p.cmdline())]
        except psutil.Error:
            supervisors, pool = [], []
        # Per hop: the pool processes (they do the work and, since the supervisor left the data path,
        # talk to the broker themselves), the supervisor alone (listed after them: the sampler counts
        # each process once), the broker, the clients.
        return {"workers": pool, "supervisor": supervisors, "broker": [self._broker.pid], "client": clients}

    def measure(self, images, pipeline, *, window, duration_s, min_tasks):
        return self._gang.measure(images, pipeline, window=window, duration_s=duration_s, min_tasks=min_tasks)

    def notes(self) -> list[str]:
        where = (f"existing deployment at {self.broker} ({self.remote_slots} worker slots at start)" if self.broker
                 else f"python -m engine.broker --local-workers {self.workers}")
        plane = self.data_plane or {}
        return [f"{where}; {self.clients} client process(es), Client.submit with a bounded window; "
                f"broker hot path: {plane.get('hot_path', 'unknown')}; same-host shared memory: "
                f"{'on' if plane.get('shared_memory') else 'off'}"]
