"""noop: change nothing. A chain of no-ops hands the input back without decoding it,
which measures the engine's own cost per task (broker capacity benchmarks)."""
from .base import register


@register("noop", help="pass the image through unchanged (no decode when nothing else is asked)",
          noop=lambda p: True, peak_bytes=lambda p, w, h, c: 0)
def noop(image, ctx):
    return image
