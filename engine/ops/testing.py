"""Test-only operations for fault injection: ``sleep``, ``crash`` and ``hang``.

Importing this module registers nothing: a process offers them only after calling
``register()``, which a worker's pool processes do when it runs with ``--test-ops``
(``WorkerConfig.test_ops``), so a production worker never offers them. The fault tests,
``tools/chaos.py --local`` and the edge lab start their workers with it; nothing else should.
"""
from __future__ import annotations

import os
import signal
import time

from .base import REGISTRY, Param
from .base import register as register_op

HANG_STEP_S = 0.05  # a hang sleeps in short steps, like C code that never returns
NAMES = ("sleep", "crash", "hang")


def register() -> None:
    """Add the test-only operations to this process's registry (once; again is a no-op)."""
    if "sleep" in REGISTRY:
        return

    @register_op("sleep", help="TEST ONLY: wait this many milliseconds, then pass the image on",
                 params=[Param("ms", int, 100, min=0, max=60_000, help="milliseconds to wait")])
    def sleep(image, ctx, *, ms):
        time.sleep(ms / 1000)
        return image

    @register_op("crash", help="TEST ONLY: kill the worker process running this step (SIGKILL)")
    def crash(image, ctx):
        os.kill(os.getpid(), signal.SIGKILL)

    @register_op("hang", help="TEST ONLY: never return (the supervisor's timeout or deadline must act)")
    def hang(image, ctx):
        while True:
            time.sleep(HANG_STEP_S)
