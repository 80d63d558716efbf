"""Argument types the benchmark commands share."""
from __future__ import annotations

import argparse


def comma_list(text: str) -> list[str]:
    """``a, b,c`` -> ``["a", "b", "c"]``."""
    return [x.strip() for x in text.split(",") if x.strip()]


def positive_ints(text: str) -> list[int]:
    """``8`` or ``8,32``: a list of integers of at least 1."""
    try:
        values = [int(x) for x in comma_list(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 2 or 8,32, got {text!r}")
    return values
