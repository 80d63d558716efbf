"""What every peer offers the harness: start, measure one workload, name its processes, stop."""
from __future__ import annotations

import importlib.util
import os
import socket
from typing import Any

from ..measure import Run, drive, pick, wait_futures


class Skip(Exception):
    """This peer cannot run here; the message says why in one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    """One system under test. Subclasses set ``name``, ``label`` and ``modules``.

    ``roles()`` names the processes to charge CPU to, most specific role first: a
    process already counted under an earlier role is not counted again under a later
    one's tree (a broker's worker children, say).
    """

    name = "peer"
    label = "a peer"
    modules: tuple[str, ...] = ()
    install_hint = "pip install .[bench]"

    def __init__(self, *, workers: int, clients: int = 1, broker: str | None = None) -> None:
        self.workers = workers
        self.clients = clients
        self.broker = broker  # an existing deployment (the engine peers only)

    def missing(self) -> str | None:
        """Why this peer cannot run (one line), or None."""
        absent = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if absent:
            return f"{', '.join(absent)} not installed ({self.install_hint})"
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def roles(self) -> dict[str, list[int]]:
        return {"workers": [], "broker": [], "client": [os.getpid()]}

    def submit(self, data: bytes, pipeline: str) -> Any:
        raise NotImplementedError

    def wait_some(self, handles: list) -> list:
        return wait_futures(handles)

    def measure(self, images: tuple[bytes, ...], pipeline: str, *, window: int, duration_s: float,
                min_tasks: int) -> Run:
        return drive(lambda i: self.submit(pick(images, i), pipeline), self.wait_some, window=window,
                     duration_s=duration_s, min_tasks=min_tasks)

    def notes(self) -> list[str]:
        """How this peer was driven, for the report."""
        return []
