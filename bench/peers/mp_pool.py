"""multiprocessing.Pool: the standard library's answer, images pickled through its pipes."""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Future

from .base import Peer


def _warm() -> None:
    import engine.ops  # noqa: F401  (import cost paid before the clock starts)


class MpPool(Peer):
    name = "mp_pool"
    label = "multiprocessing.Pool"

    def start(self) -> None:
        from engine.ops import run

        self._fn = run
        self._pool = mp.get_context("spawn").Pool(self.workers, initializer=_warm)

    def stop(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def roles(self) -> dict[str, list[int]]:
        import os

        return {"workers": [p.pid for p in self._pool._pool], "broker": [], "client": [os.getpid()]}

    def submit(self, data: bytes, pipeline: str) -> Future:
        fut: Future = Future()
        self._pool.apply_async(self._fn, (data, pipeline), callback=fut.set_result, error_callback=fut.set_exception)
        return fut

    def notes(self) -> list[str]:
        return ["apply_async with a bounded window (imap would hide per-task latency); spawn context"]
