"""The status page's "Recent failures": the broker's last failed tasks, grouped and readable.

The broker keeps each failure's pipeline in the canonical form (every parameter explicit),
which is long and not what anyone wrote. ``as_written`` drops the parameters that equal their
declared defaults, so ``resize:height=0,interpolation=auto,mode=fit,upscale=true,width=0``
reads ``resize`` again. ``grouped`` folds repeats (same code, message and pipeline) into one
row with a count, newest first: six images failing the same way are one line, "6 ×".
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .. import pipeline_syntax
from ..errors import EngineError

TEXT_CHARS = 200  # each text cell as the page shows it, at most


def as_written(pipeline: str, declared: Mapping[str, Mapping[str, Any]]) -> str:
    """``pipeline`` without the parameters equal to their defaults in ``declared`` (the
    operations' declarations from INFO); unchanged when it does not parse (a truncated text,
    an operation no worker declares)."""
    try:
        steps = []
        for name, raw in pipeline_syntax.split(pipeline):
            params = {p["name"]: p for p in (declared.get(name) or {}).get("params") or []}
            kept = {}
            for key, value in raw.items():
                param = params.get(key)
                if param is None or "default" not in param \
                        or pipeline_syntax.coerce(name, param, value) != param["default"]:
                    kept[key] = value
            steps.append(pipeline_syntax.step_text(name, kept))
        return "|".join(steps)
    except (EngineError, TypeError, ValueError, AttributeError):
        return pipeline


def _when(at: Any) -> str:
    if not isinstance(at, (int, float)):
        return ""
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def grouped(failures: list, declared: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """One row per (code, message, pipeline as written): its count, newest time and workers,
    newest first."""
    groups: dict[tuple, dict] = {}
    for f in failures:
        if not isinstance(f, dict):
            continue
        text = {k: str(f.get(k, ""))[:TEXT_CHARS] for k in ("code", "message", "pipeline", "worker")}
        pipeline = as_written(text["pipeline"], declared)
        at = f.get("at_unix_s") if isinstance(f.get("at_unix_s"), (int, float)) else None
        key = (text["code"], text["message"], pipeline)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"code": text["code"], "message": text["message"], "pipeline": pipeline,
                                   "count": 0, "at_unix_s": at, "workers": []}
        group["count"] += 1
        if at is not None and (group["at_unix_s"] is None or at > group["at_unix_s"]):
            group["at_unix_s"] = at
        if text["worker"] and text["worker"] not in group["workers"]:
            group["workers"].append(text["worker"])
    rows = sorted(groups.values(), key=lambda g: g["at_unix_s"] or 0, reverse=True)
    for g in rows:
        g["at"] = _when(g["at_unix_s"])
        g["worker"] = ", ".join(g["workers"])
    return rows
