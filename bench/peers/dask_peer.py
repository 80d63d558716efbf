"""Dask distributed: a LocalCluster of single-threaded worker processes, futures API."""
from __future__ import annotations

import logging
import os

from ..measure import TASK_TIMEOUT_S
from .base import Peer


def _warm() -> int:
    import engine.ops  # noqa: F401  (import cost paid before the clock starts)

    return os.getpid()


class Dask(Peer):
    name = "dask"
    label = "Dask distributed (LocalCluster, processes, 1 thread each)"
    modules = ("dask", "distributed")

    def start(self) -> None:
        from distributed import Client, LocalCluster

        from engine.ops import run

        self._run = run
        self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=logging.ERROR)
        self._client = Client(self._cluster)
        self._pids = list(self._client.run(_warm).values())

    def stop(self) -> None:
        for thing in ("_client", "_cluster"):
            obj = getattr(self, thing, None)
            if obj is not None:
                obj.close()

    def roles(self) -> dict[str, list[int]]:
        return {"workers": self._pids, "broker": [], "client": [os.getpid()]}

    def submit(self, data: bytes, pipeline: str):
        return self._client.submit(self._run, data, pipeline, pure=False)

    def wait_some(self, handles: list) -> list:
        from distributed import wait

        done, _ = wait(handles, timeout=TASK_TIMEOUT_S, return_when="FIRST_COMPLETED")
        ok = [f for f in done if f.status == "finished"]
        out = [(f, f.exception()) for f in done if f.status != "finished"]
        out.extend(zip(ok, self._client.gather(ok)))
        return out

    def notes(self) -> list[str]:
        return [f"LocalCluster(n_workers={self.workers}, threads_per_worker=1, processes=True); "
                "client.submit(pure=False) with a bounded window, distributed.wait + gather; the scheduler "
                "runs inside the client process, so its CPU is counted as client"]
