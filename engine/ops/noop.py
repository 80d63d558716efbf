"""noop: change nothing. A chain of no-ops hands the input back without decoding it,
which measures the engine's own cost per task (broker capacity benchmarks)."""
from .base import register


@register("noop", help="pass the image through unchanged (no decode when nothing else is asked)",
          noop=lambda p: True)
def noop(image, ctx):
    return image
