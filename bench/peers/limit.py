"""The limit: the pipeline in plain processes, one per worker slot, no messaging at all.

Each process loops over the images on its own until the time is up; nothing is sent
anywhere. What a system reaches here is the most the machine gives for this pipeline.
"""
from __future__ import annotations

import time

from ..measure import Run, pick
from .base import Peer
from .gang import Gang


class LimitDriver:
    """Runs inside each limit process."""

    def __init__(self, share: int) -> None:
        from engine.ops import run

        self._run = run
        self.share = share

    def measure(self, images: tuple[bytes, ...], pipeline: str, *, window: int, duration_s: float,
                min_tasks: int) -> Run:
        run = Run()
        mine = -(-min_tasks // self.share)
        run.started = time.perf_counter()
        deadline = run.started + duration_s
        i = 0
        while time.perf_counter() < deadline or i < mine:
            t0 = time.perf_counter()
            outcome = self._run(pick(images, i), pipeline)
            run.finished = time.perf_counter()
            run.record(run.finished - t0, outcome)
            i += 1
        return run


class Limit(Peer):
    name = "limit"
    label = "limit (plain processes, no messaging)"

    def start(self) -> None:
        self._gang = Gang(self.workers, "bench.peers.limit:LimitDriver", share=self.workers)
        self._gang.start()

    def stop(self) -> None:
        self._gang.stop()

    def roles(self) -> dict[str, list[int]]:
        return {"workers": self._gang.pids(), "broker": [], "client": []}

    def measure(self, images, pipeline, *, window, duration_s, min_tasks):
        return self._gang.measure(images, pipeline, window=window, duration_s=duration_s, min_tasks=min_tasks)

    def notes(self) -> list[str]:
        return [f"{self.workers} processes each loop over the images; latency is the pipeline call alone"]
