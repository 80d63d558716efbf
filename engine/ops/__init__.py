"""Image operations: the registry, pipelines, the planner and the runner.

Importing this package registers every built-in operation. ``run`` processes encoded
bytes; ``parse`` validates a pipeline; ``describe`` lists the operations and their
declared parameters (what workers announce to the broker). ``warm_up`` loads the learned
models into a process's cache before its first task.
"""
import time

from . import (  # noqa: F401
    anonymize,
    background,
    colour,
    edge,
    effects,
    faces,
    filters,
    formats,
    gradients,
    grayscale,
    histogram,
    litert,
    morphology,
    noop,
    resize,
    threshold,
    tone,
    transform,
    watermark,
)
from .base import REGISTRY, Context, Operation, Param, register
from .codec import Limits
from .pipeline import Step, canonical, parse
from .runner import run


def describe() -> dict:
    """Every registered operation with its declared parameters, by name."""
    return {name: op.describe() for name, op in sorted(REGISTRY.items())}


def warm_up(cache: dict) -> dict[str, float]:
    """Load every bundled model into ``cache`` (the dict later given to ``run(..., cache=)``),
    under the keys the operations use, so that no task pays the load. Returns the load
    time in ms per model. Call once per pool process, at start-up; cheap if already warm."""
    ctx = Context(cache=cache)
    load_ms = {}
    for name in litert.MODEL_FILES:
        started = time.perf_counter()
        litert.model(ctx, name)
        load_ms[name] = round((time.perf_counter() - started) * 1000, 3)
    for spec in faces.blazeface.SPECS.values():
        faces.anchors(ctx, spec)
    return load_ms


__all__ = ["REGISTRY", "Context", "Limits", "Operation", "Param", "Step", "canonical", "describe",
           "parse", "register", "run", "warm_up"]
