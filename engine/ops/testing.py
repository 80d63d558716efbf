"""Test-only operations for fault injection: ``sleep``, ``crash`` and ``hang``.

They are registered only when ``ENGINE_TEST_OPS=1`` is in the environment of the
process that imports ``engine.ops`` (a worker reads it at start; its pool processes
inherit it), so a production worker never offers them. The reliability tests and
``tools/chaos.py --local`` set it; nothing else should.
"""
from __future__ import annotations

import os
import signal
import time

from .base import Param, register

ENV = "ENGINE_TEST_OPS"
HANG_STEP_S = 0.05  # a hang sleeps in short steps, like C code that never returns


def enabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _register() -> None:
    @register("sleep", help="TEST ONLY: wait this many milliseconds, then pass the image on",
              params=[Param("ms", int, 100, min=0, max=60_000, help="milliseconds to wait")])
    def sleep(image, ctx, *, ms):
        time.sleep(ms / 1000)
        return image

    @register("crash", help="TEST ONLY: kill the worker process running this step (SIGKILL)")
    def crash(image, ctx):
        os.kill(os.getpid(), signal.SIGKILL)

    @register("hang", help="TEST ONLY: never return (the supervisor's timeout or deadline must act)")
    def hang(image, ctx):
        while True:
            time.sleep(HANG_STEP_S)


if enabled():
    _register()
