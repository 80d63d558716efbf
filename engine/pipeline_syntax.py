"""Pipelines as data, with no numpy or OpenCV: syntax, checking against a declared schema,
and the canonical text. The one pipeline checker: the broker, the web gateway, the client
library and the command line call it, and workers run the same code.

Text form:       ``resize:width=640|sharpen:amount=1.5|webp:quality=80``
Structured form: ``[{"op": "resize", "params": {"width": 640}}, {"op": "webp"}]``

``split`` turns either form into ``(operation name, raw parameters)`` pairs, checking the
syntax only. ``check`` then checks names and parameters against a *schema*: what
``engine.ops.describe()`` returns and workers declare in READY (operation name ->
``{"params": [{"name", "type", "default" or "required", "min", "max", "choices"}]}``), so
the broker can check a pipeline against what its workers offer without importing them.
The registry's own checks (``engine.ops``) call ``bind`` and ``coerce`` below: one
implementation. ``canonical`` is the one text form. ``step_names`` is what a task needs
of a worker (Majordomo's service name, one per step).

Who checks what:

- ``check_syntax``: what needs no schema (the client library, before anything is sent).
- ``offered(info).check``: against the schema in the broker's INFO answer (the web gateway
  and the command line). When INFO cannot say (no worker has declared its operations, the
  answer was cut to names, or workers of different engine versions declare an operation of
  the pipeline differently), or a declaration cannot be read, only the syntax is checked
  and the broker decides.
- ``check_declarations``: against each distinct declaration the broker holds (the broker,
  at admission; a rolling upgrade has several).
"""
from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from .errors import BadParameter, PipelineError, UnknownOperation

log = logging.getLogger("engine.pipeline")

MAX_STEPS = 32
MAX_TEXT_CHARS = 4096


def suggest(name: str, choices) -> str:
    """" — did you mean 'x'?" for the closest of ``choices`` to a mistyped ``name``, else ""."""
    close = difflib.get_close_matches(name.lower(), sorted(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def split_text(text: str) -> list[tuple[str, dict[str, str]]]:
    if len(text) > MAX_TEXT_CHARS:
        raise PipelineError(f"pipeline text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    steps = []
    for chunk in text.split("|"):
        chunk = chunk.strip()
        if not chunk:
            raise PipelineError(f"empty step in pipeline {text!r} (two '|' in a row, or one at an end)")
        name, _, argtext = chunk.partition(":")
        params: dict[str, str] = {}
        for pair in filter(None, (a.strip() for a in argtext.split(","))):
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise BadParameter(f"{name.strip()}: expected key=value, got {pair!r}")
            params[key.strip()] = unquote(value.strip())
        steps.append((name.strip(), params))
    return steps


def split_structured(items: list) -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            steps.extend(split_text(item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("op"), str):
            raise PipelineError(f"step {i} must be a map with an 'op' name, got {item!r:.80}")
        params = item.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise PipelineError(f"step {i} ({item['op']}): 'params' must be a map of names to values")
        extra = set(item) - {"op", "params"}
        if extra:
            raise PipelineError(f"step {i} ({item['op']}): unexpected keys {sorted(extra)}; use 'op' and 'params'")
        steps.append((item["op"], params))
    return steps


def split(pipeline: str | list) -> list[tuple[str, dict[str, Any]]]:
    """``(name, raw params)`` per step, in order. Raises a PipelineError subclass."""
    if isinstance(pipeline, str):
        raw = split_text(pipeline)
    elif isinstance(pipeline, (list, tuple)):
        raw = split_structured(list(pipeline))
    else:
        raise PipelineError(f"a pipeline is text or a list of steps, got {type(pipeline).__name__}")
    if not raw:
        raise PipelineError("the pipeline has no steps")
    if len(raw) > MAX_STEPS:
        raise PipelineError(f"the pipeline has {len(raw)} steps; the limit is {MAX_STEPS}")
    return raw


@functools.lru_cache(maxsize=1024)
def _names_of_text(pipeline: str) -> frozenset[str] | None:
    return _names(pipeline)


def _names(pipeline: str | list) -> frozenset[str] | None:
    try:
        return frozenset(name for name, _ in split(pipeline))
    except PipelineError:
        return None


def step_names(pipeline: str | list) -> frozenset[str] | None:
    """The operations a pipeline uses; None if its syntax is wrong (a worker then answers
    with the precise error). Text forms are remembered: clients repeat a few pipelines."""
    return _names_of_text(pipeline) if isinstance(pipeline, str) else _names(pipeline)


@functools.lru_cache(maxsize=256)
def _check_text_syntax(pipeline: str) -> None:
    split(pipeline)  # an error is raised, not remembered


def check_syntax(pipeline: str | list) -> None:
    """Raise a pipeline's syntax error, if it has one: all that can be checked without a
    schema. Text forms are remembered."""
    if isinstance(pipeline, str):
        _check_text_syntax(pipeline)
    else:
        split(pipeline)


# ---- checking against a schema ------------------------------------------------------------
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


# Named formats a str parameter may declare ("format": name): named, never a regex from the
# schema, so a worker's declaration cannot make the broker run an expensive pattern.
FORMATS = {"hex_colour": (re.compile(r"#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})"), "hex RRGGBB or RRGGBBAA")}


def coerce(op: str, param: Mapping[str, Any], value: Any) -> Any:
    """``value`` as the declared parameter's type, checked against its range and choices."""
    kind = param["type"]
    where = f"{op}: parameter {param['name']!r}"
    try:
        if kind == "bool":
            if isinstance(value, str):
                word = value.strip().lower()
                if word not in _TRUE + _FALSE:
                    raise ValueError(value)
                value = word in _TRUE
            elif not isinstance(value, (bool, int)):
                raise ValueError(value)
            value = bool(value)
        elif kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            value = int(value)
        elif kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(value)
        elif kind == "str":
            value = str(value)
        else:
            raise PipelineError(f"{where} has a type this engine does not know: {kind!r}")
    except (TypeError, ValueError):
        raise BadParameter(f"{where} must be {kind}, got {value!r}") from None
    choices, low, high = param.get("choices"), param.get("min"), param.get("max")
    if choices is not None and value not in choices:
        raise BadParameter(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}")
    if low is not None and value < low:
        raise BadParameter(f"{where} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise BadParameter(f"{where} must be <= {high}, got {value!r}")
    if param.get("odd") and isinstance(value, int) and value % 2 == 0:
        raise BadParameter(f"{where} must be odd (3, 5, 7...), got {value!r}")
    if isinstance(value, str):
        most, fmt = param.get("max_length"), FORMATS.get(param.get("format") or "")
        fewest = 1 if param.get("nonempty") else 0
        if len(value) < fewest or (isinstance(most, int) and len(value) > most):
            raise BadParameter(f"{where} must be {fewest} to {most} characters" if isinstance(most, int)
                               else f"{where} must not be empty")
        if fmt is not None and not fmt[0].fullmatch(value):
            raise BadParameter(f"{where} must be {fmt[1]}, got {value[:40]!r}")
    return value


def bind(op: str, params: list[Mapping[str, Any]], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Checked, complete parameters of operation ``op`` from user-given ones (strings or typed)."""
    known = {p["name"]: p for p in params}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        valid = ", ".join(known) or "none"
        close = difflib.get_close_matches(unknown[0].lower(), sorted(known), n=1, cutoff=0.6)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise BadParameter(f"{op}: unknown parameter {unknown[0]!r}{hint}; valid parameters: {valid}")
    out = {}
    for p in params:
        name = p["name"]
        if name in raw:
            out[name] = coerce(op, p, raw[name])
        elif p.get("required"):
            raise BadParameter(f"{op}: parameter {name!r} is required ({p.get('help', '')})")
        else:
            out[name] = p.get("default")
    return out


def unknown_operation(name: str, offered) -> UnknownOperation:
    valid = ", ".join(sorted(offered))
    return UnknownOperation(f"unknown operation {name!r}{suggest(name, offered)} (valid operations: {valid})")


def check(pipeline: str | list, schema: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, checked parameters)`` per step, against ``schema``. Raises the PipelineError
    (``unknown_operation``, ``bad_parameter``, ``bad_pipeline``) a worker would. The
    checks an operation declares as data run here too (odd sizes, colour formats, text lengths,
    ``any_of``); the few cross-parameter checks that are code (threshold's block when adaptive)
    run on the worker."""
    steps = []
    for name, raw in split(pipeline):
        declared = schema.get(name)
        if declared is None:
            raise unknown_operation(name, schema)
        params = bind(name, declared.get("params") or [], raw)
        check_any_of(name, declared, params)
        steps.append((name, params))
    kinds = [schema[name].get("kind") for name, _ in steps]
    if FORMAT in kinds:
        check_formats_last(split(pipeline), kinds,
                           (n for n, d in schema.items() if isinstance(d, Mapping) and d.get("kind") == FORMAT))
    return steps


FORMAT = "format"  # the declared ``kind`` of an operation that chooses the output encoding (engine.ops.formats)


def check_formats_last(raw: Sequence[tuple[str, Mapping[str, Any]]], kinds: Sequence[Any], formats) -> None:
    """A format step (``kind`` "format": jpeg, png, webp, json) chooses how the result is
    encoded, once, after every other step: it encodes nothing where it stands, so one
    followed by any other step is refused, with the order that does what it seems to ask.
    Several format steps at the end are allowed: the last one chooses. ``raw``: the steps as
    ``split`` gives them; ``kinds``: each one's declared kind; ``formats``: every format
    operation offered (named in the message)."""
    first = kinds.index(FORMAT) if FORMAT in kinds else len(kinds)
    later = [name for (name, _), kind in zip(raw[first + 1:], kinds[first + 1:], strict=True) if kind != FORMAT]
    if not later:
        return
    reordered = [step for step, kind in zip(raw, kinds, strict=True) if kind != FORMAT] + \
                [step for step, kind in zip(raw, kinds, strict=True) if kind == FORMAT]
    raise PipelineError(f"{raw[first][0]!r} comes before {later[0]!r}: format steps ({', '.join(sorted(formats))}) "
                        "go last and choose the output format (nothing is encoded between steps); write "
                        f"{'|'.join(step_text(name, params) for name, params in reordered)!r}")


def check_any_of(op: str, declared: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """An operation that declares ``any_of`` needs one of those parameters set (not 0, not empty)."""
    names = declared.get("any_of")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names) \
            and not any(params.get(n) for n in names):
        which = f"{', '.join(names)} or {'both' if len(names) == 2 else 'several'}" if len(names) > 1 else names[0]
        extra = declared.get("any_of_help")
        raise BadParameter(f"{op}: give {which}" + (f" ({extra})" if isinstance(extra, str) and extra else ""))


# ---- the canonical text ---------------------------------------------------------------------
# Characters a text-form value keeps as they are (all printable ASCII but % , | and space).
_SAFE = "".join(chr(c) for c in range(33, 127) if chr(c) not in "%,|")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return quote(value, safe=_SAFE)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def step_text(name: str, params: Mapping[str, Any]) -> str:
    """One step in the canonical text form: every parameter explicit, sorted, escaped."""
    args = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
    return f"{name}:{args}" if args else name


def canonical(steps: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The one text form of checked steps: it parses back to the same steps."""
    return "|".join(step_text(name, params) for name, params in steps)


# ---- against what the workers declared --------------------------------------------------------
def as_written(pipeline: str | list) -> str:
    """A pipeline for the broker to check, once its syntax is right: text as written (stripped),
    a structured one in the text form with its parameters as given (not checked)."""
    if isinstance(pipeline, str):
        check_syntax(pipeline)
        return pipeline.strip()
    return canonical(split(pipeline))


def check_readable(pipeline: str | list, schema: Mapping[str, Mapping[str, Any]]
                   ) -> list[tuple[str, dict[str, Any]]] | None:
    """``check``, or None when ``schema`` holds a declaration this engine cannot read (a
    newer engine's): then the workers decide."""
    try:
        return check(pipeline, schema)
    except PipelineError:
        raise
    except Exception as exc:
        log.debug("could not check pipeline %.80r against a worker's schema: %s", pipeline, exc)
        return None


class Checked(NamedTuple):
    text: str  # for the engine: the canonical text when checked, else the pipeline as written
    steps: list[tuple[str, dict[str, Any]]] | None  # the checked steps; None: only the syntax was checked


@dataclass(frozen=True)
class Offered:
    """What the workers offer, as the broker's INFO answer tells it: ``schema`` (operation
    name -> declaration), or None and ``note`` saying why the broker cannot say; ``differ``:
    the operations workers of different engine versions declare differently (INFO lists
    one declaration of each; the broker checks against every one)."""

    schema: dict[str, dict] | None
    note: str = ""
    differ: frozenset = frozenset()

    def check(self, pipeline: str | list) -> Checked:
        """The pipeline checked against the schema, or only its syntax where the schema
        cannot say. Raises the PipelineError a worker would (``bad_pipeline``,
        ``unknown_operation`` with did-you-mean, ``bad_parameter``)."""
        if self.schema is not None and not self.differ & (step_names(pipeline) or frozenset()):
            steps = check_readable(pipeline, self.schema)
            if steps is not None:
                return Checked(canonical(steps), steps)
        return Checked(as_written(pipeline), None)


def offered(info: Any) -> Offered:
    """The schema in the broker's INFO answer (``ops``, ``ops_differ``, ``truncated``), or
    why there is none to check against."""
    info = info if isinstance(info, dict) else {}
    if info.get("truncated"):
        return Offered(None, "the broker's INFO answer was cut to operation names (too many workers "
                             "or operations to list)")
    declared = info.get("ops") if isinstance(info.get("ops"), dict) else {}
    readable = [(name, d) for name, d in declared.items() if isinstance(name, str) and isinstance(d, dict)]
    schema = dict(sorted(readable, key=lambda item: item[0]))
    if not schema:
        return Offered(None, "no connected worker has declared its operations (none connected yet, "
                             "or workers too old to say)")
    differ = info.get("ops_differ")
    differ = frozenset(n for n in differ if isinstance(n, str)) if isinstance(differ, list) else frozenset()
    if differ:
        return Offered(schema, f"workers of different engine versions declare {', '.join(sorted(differ))} "
                               "differently; the broker checks pipelines that use them", differ)
    return Offered(schema)


def check_declarations(pipeline: str | list, declarations: Mapping[Any, Mapping[str, Mapping[str, Any]]]
                       ) -> tuple[str | None, frozenset | None]:
    """Against each distinct declaration of the operations (workers of different engine
    versions, in a rolling upgrade): the canonical text and the declarations that accept
    the pipeline (None: every one does). ``(None, None)`` when there is no declaration, or
    one cannot be read: the workers decide. Raises the first declaration's error when none
    accepts."""
    if not declarations:
        return None, None
    text: str | None = None
    accepted, first_error = [], None
    for ident, schema in declarations.items():
        try:
            steps = check_readable(pipeline, schema)
        except PipelineError as exc:
            first_error = first_error or exc
            continue
        if steps is None:
            return None, None
        text = text or canonical(steps)
        accepted.append(ident)
    if first_error is not None and not accepted:
        raise first_error
    return text, None if len(accepted) == len(declarations) else frozenset(accepted)
