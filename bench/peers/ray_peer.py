"""Ray: a local Ray instance with one CPU per worker, remote tasks, ray.wait to bound
the tasks in flight (the pattern Ray's documentation gives for limiting pending tasks)."""
from __future__ import annotations

import os

from ..measure import TASK_TIMEOUT_S
from .base import Peer


class Ray(Peer):
    name = "ray"
    label = "Ray (local, remote tasks)"
    modules = ("ray",)

    def start(self) -> None:
        import ray

        from engine.ops import run

        self._ray = ray
        ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
        self._task = ray.remote(num_cpus=1)(run)

    def stop(self) -> None:
        if getattr(self, "_ray", None) is not None and self._ray.is_initialized():
            self._ray.shutdown()

    def roles(self) -> dict[str, list[int]]:
        import psutil

        workers, others = [], []
        for proc in psutil.Process().children(recursive=True):
            try:
                name = proc.name()
            except psutil.Error:
                continue
            task_process = name.startswith("ray::") and not name.endswith("Agent")  # ray::IDLE, ray::run
            (workers if task_process else others).append(proc.pid)
        # raylet, gcs_server and their agents and monitors route the tasks: Ray's "broker"
        return {"workers": workers, "broker": others, "client": [os.getpid()]}

    def submit(self, data: bytes, pipeline: str):
        return self._task.remote(data, pipeline)

    def wait_some(self, handles: list) -> list:
        ray = self._ray
        ready, _ = ray.wait(handles, num_returns=1, timeout=TASK_TIMEOUT_S)
        if not ready:
            raise TimeoutError(f"no Ray task finished in {TASK_TIMEOUT_S:.0f} s")
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0)
        out = []
        for ref in ready:
            try:
                out.append((ref, tuple(ray.get(ref))))
            except Exception as exc:
                out.append((ref, exc))
        return out

    def notes(self) -> list[str]:
        return [f"ray.init(num_cpus={self.workers}), @ray.remote(num_cpus=1) tasks, ray.wait to bound the "
                "window; raylet, GCS and Ray's agents and monitors counted as broker"]
