"""Command-line flags that can also be set by environment variables.

Each flag names its variable in ``--help`` together with its default, so
``ENGINE_BROKER_FRONT=tcp://*:6000 python -m engine.broker`` and
``python -m engine.broker --front tcp://*:6000`` mean the same.

A component's settings dataclass declares its flags on its fields: ``setting(...)`` for a
field a flag sets (its name, variable, help and unit), ``fixed(...)`` for one no flag sets
(and why). ``add_flags`` puts them on a parser and ``from_args`` builds the dataclass from
the parsed flags, so a command line never copies fields by hand and a new field cannot
silently lack a flag (tests/test_settings.py checks every field is one or the other).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
C = TypeVar("C")
FLAG = "engine.flag"  # the key of a field's Flag (or NoFlag) in its metadata

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


@dataclasses.dataclass(frozen=True)
class Flag:
    """How the command line sets one settings field: ``--name`` (or ``$env``) gives the value
    in the flag's unit, the field holds it times ``scale`` (a MiB flag for a bytes field)."""

    name: str  # "": ``--`` and the field's name with dashes
    env: str
    help: str
    scale: int = 1
    type: Callable[[str], Any] | None = None
    default: Any = None  # the flag's default (None: the field's, in the flag's unit)
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        """The flag's attribute in the parsed namespace."""
        return self.name.lstrip("-").replace("-", "_")


@dataclasses.dataclass(frozen=True)
class NoFlag:
    """A settings field no flag sets, and why (an internal tuning, or derived from other flags)."""

    why: str


def setting(default: T, *, env: str, help: str, flag: str = "", scale: int = 1,
            type: Callable[[str], Any] | None = None, flag_default: Any = None,
            choices: tuple[str, ...] | None = None) -> T:
    """A dataclass field that ``flag`` sets (by default ``--`` and the field's name with dashes)."""
    spec = Flag(flag, env, help, scale, type, flag_default, choices)
    return dataclasses.field(default=default, metadata={FLAG: spec})


def fixed(default: T, *, why: str) -> T:
    """A dataclass field that no flag sets; ``why`` says so in the code (and to the test)."""
    return dataclasses.field(default=default, metadata={FLAG: NoFlag(why)})


def field_flags(cls: type) -> dict[str, Flag | NoFlag | None]:
    """Each field of the settings dataclass ``cls``: its Flag (name and default filled in),
    its NoFlag, or None where the field declares neither."""
    found: dict[str, Flag | NoFlag | None] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(FLAG)
        if isinstance(spec, Flag):
            default = spec.default
            if default is None:
                field_default: Any = f.default
                default = field_default // spec.scale if spec.scale != 1 else field_default
            spec = dataclasses.replace(spec, name=spec.name or "--" + f.name.replace("_", "-"), default=default)
        found[f.name] = spec
    return found


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a flag for every field of ``cls`` declared with ``setting``, in the fields' order."""
    for spec in field_flags(cls).values():
        if isinstance(spec, Flag):
            extra = {"choices": spec.choices} if spec.choices else {}
            flag(parser, spec.name, env=spec.env, default=spec.default, help=spec.help, type=spec.type, **extra)


def from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """The settings dataclass ``cls`` from parsed flags: each flagged field from its flag (in
    the field's unit), ``overrides`` for the fields a command line derives, defaults for the rest."""
    values = {name: getattr(args, spec.dest) * spec.scale if spec.scale != 1 else getattr(args, spec.dest)
              for name, spec in field_flags(cls).items() if isinstance(spec, Flag)}
    return cls(**{**values, **overrides})


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def setup_logging(level: str) -> None:
    """Log configuration for the command lines only (libraries never configure logging)."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
