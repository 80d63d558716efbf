"""Command-line flags that can also be set by environment variables.

Each flag names its variable in ``--help`` together with its default, so
``ENGINE_BROKER_FRONT=tcp://*:6000 python -m engine.broker`` and
``python -m engine.broker --front tcp://*:6000`` mean the same.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def prog(module: str) -> str:
    """The command's name in ``--help`` and errors, as it was invoked: the installed script
    (``engine-broker``) or ``python -m engine.broker``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("__main__.py", "-c", "-m") and not name.endswith(".py") \
        else f"python -m {module}"


def flag(parser: argparse.ArgumentParser, name: str, *, env: str, default: Any, help: str,
         type: Callable[[str], Any] | None = None, **kwargs: Any) -> None:
    """Add ``--name``; its default comes from ``env`` when that variable is set."""
    if isinstance(default, bool) and type is None:
        raw = os.environ.get(env)
        if raw is not None:
            if raw.strip().lower() not in _TRUE | _FALSE:
                parser.error(f"{env}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")
            default = raw.strip().lower() in _TRUE
        action = argparse.BooleanOptionalAction
        parser.add_argument(name, default=default, action=action, help=f"{help} [env {env}; default: {default}]",
                            **kwargs)
        return
    conv = type or (default.__class__ if default is not None else str)
    raw = os.environ.get(env)
    if raw is not None:
        try:
            default = conv(raw)
        except (TypeError, ValueError):
            parser.error(f"{env}={raw!r}: expected {getattr(conv, '__name__', 'a value')}")
    parser.add_argument(name, default=default, type=conv, help=f"{help} [env {env}; default: {default}]",
                        **kwargs)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def setup_logging(level: str) -> None:
    """Log configuration for the command lines only (libraries never configure logging)."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
