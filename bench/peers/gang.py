"""A gang of long-lived processes that each run a driver when told to: client processes
for the engine, the plain processes of the limit peer.

The processes are started once per peer (spawned, so no socket or thread of the harness
is inherited) and told over a pipe what to measure; each answers with its ``Run``.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
from typing import Any

from ..measure import Run
from .base import Skip

START_TIMEOUT_S = 60.0
MEASURE_TIMEOUT_S = 600.0


def _serve(conn, factory: str, kwargs: dict) -> None:
    module, _, attr = factory.partition(":")
    try:
        driver = getattr(importlib.import_module(module), attr)(**kwargs)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    try:
        while True:
            cmd = conn.recv()
            if cmd is None:
                break
            try:
                conn.send(("ok", driver.measure(*cmd[0], **cmd[1]).as_dict()))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        close = getattr(driver, "close", None)
        if close:
            close()


class Gang:
    def __init__(self, size: int, factory: str, **kwargs: Any) -> None:
        self.size, self.factory, self.kwargs = size, factory, kwargs
        self._ctx = mp.get_context("spawn")
        self._procs: list = []
        self._conns: list = []

    def start(self) -> None:
        for _ in range(self.size):
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_serve, args=(child, self.factory, self.kwargs), daemon=True)
            proc.start()
            self._procs.append(proc)
            self._conns.append(parent)
        for conn in self._conns:
            if not conn.poll(START_TIMEOUT_S):
                raise Skip(f"{self.factory} process did not start in {START_TIMEOUT_S:.0f} s")
            status, detail = conn.recv()
            if status != "ready":
                raise Skip(f"{self.factory} process failed to start: {detail}")

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def measure(self, *args: Any, **kwargs: Any) -> Run:
        for conn in self._conns:
            conn.send((args, kwargs))
        total = Run()
        for conn in self._conns:
            if not conn.poll(MEASURE_TIMEOUT_S):
                raise RuntimeError(f"a {self.factory} process gave no result in {MEASURE_TIMEOUT_S:.0f} s")
            status, detail = conn.recv()
            if status != "ok":
                raise RuntimeError(detail)
            total = total.merge(Run(**detail))
        return total

    def stop(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        self._procs, self._conns = [], []
