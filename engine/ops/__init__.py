"""Image operations: the registry, pipelines, the planner and the runner.

Importing this package registers every built-in operation. ``run`` processes encoded
bytes; ``parse`` validates a pipeline; ``describe`` lists the operations and their
declared parameters (what workers announce to the broker).
"""
from . import (colour, edge, effects, faces, filters, formats, gradients, grayscale,  # noqa: F401
               histogram, morphology, noop, resize, testing, threshold, tone, transform, watermark)
from .base import REGISTRY, Context, Operation, Param, register
from .codec import Limits
from .pipeline import Step, canonical, parse
from .runner import run


def describe() -> dict:
    """Every registered operation with its declared parameters, by name."""
    return {name: op.describe() for name, op in sorted(REGISTRY.items())}


__all__ = ["REGISTRY", "Context", "Limits", "Operation", "Param", "Step", "canonical", "describe",
           "parse", "register", "run"]
