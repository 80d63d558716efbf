"""The batch command line's work: check the pipeline once, send every planned image with a
bounded window, write each result whole, and count what was really written."""
from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import pipeline_syntax as syntax
from ..errors import READ_FAILED, WRITE_FAILED, EngineError
from .outputs import EXTENSIONS, Item, write_new
from .sync import Client


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the rest was not finished (resumable with --skip-existing)


def check_pipeline(pipeline: str, info: dict) -> str | None:
    """Check the pipeline once, before any image is read, against what the broker's workers
    declared (its INFO answer ``info``), with the checker the broker and the web gateway use:
    the command line needs neither OpenCV nor the workers' version of the operations. Returns
    the pipeline's last format step (``jpeg``, ``png``, ``webp``) or None. Raises the
    PipelineError a worker would, with a did-you-mean suggestion."""
    offer = syntax.offered(info)
    steps = offer.check(pipeline).steps
    if steps is not None:
        formats = [name for name, _ in steps if offer.schema[name].get("kind") == "format"]  # type: ignore[index]
    else:  # only the syntax could be checked (the broker will decide): a format known by its name
        formats = [name for name, _ in syntax.split(pipeline) if name in EXTENSIONS]
    return formats[-1] if formats else None


def _meta_line(item: Item, written: bool, meta: dict | None, error: EngineError | str | None,
               code: str = WRITE_FAILED) -> str:
    line: dict = {"input": str(item.source), "output": str(item.output) if written else None, "ok": written}
    if meta is not None:
        line["meta"] = meta
    if error is not None:
        line["error"] = {"code": getattr(error, "code", code), "message": str(error)}
    return json.dumps(line, separators=(",", ":"), default=str)


def run(client: Client, items: list[Item], pipeline: str, *, window: int, overwrite: bool,
        meta_out: IO[str] | None = None, quiet: bool = False) -> Outcome:
    """Send every item with at most ``window`` in flight; write results; one JSON line per
    image to ``meta_out`` when given. Ctrl-C stops it with what was done counted
    (``interrupted``): every result written is whole (``write_new``). The progress bar is
    redrawn in place on a terminal; when stderr is not one (a pipe, a log file) its final
    state is printed once, as one line, at the end."""
    from tqdm import tqdm

    outcome = Outcome()
    live = not quiet and sys.stderr.isatty()  # a bar redrawn in place; a pipe or a log file gets one line
    started_s = time.monotonic()
    with tqdm(total=len(items), unit="img", disable=not live, file=sys.stderr) as bar:
        try:
            _send_all(client, items, pipeline, window, overwrite, meta_out, bar, outcome)
        except KeyboardInterrupt:
            outcome.interrupted = True
    if not quiet and not live:
        done = len(outcome.written) + len(outcome.failed)
        print(tqdm.format_meter(done, len(items), time.monotonic() - started_s, unit="img", bar_format=FINAL_LINE),
              file=sys.stderr)
    return outcome


FINAL_LINE = "{percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}]"  # the bar's last state, without the bar


def _send_all(client: Client, items: list[Item], pipeline: str, window: int, overwrite: bool,
              meta_out: IO[str] | None, bar: Any, outcome: Outcome) -> None:
    inflight: dict[cf.Future, Item] = {}
    todo = iter(items)
    while True:
        for item in todo:
            try:
                data = item.source.read_bytes()
            except OSError as exc:  # gone or unreadable since it was found: this one fails, the rest go on
                _finish(item, f"could not read {item.source}: {exc.strerror or exc}", None, outcome, meta_out, bar,
                        code=READ_FAILED)
                continue
            inflight[client.submit(data, pipeline)] = item
            if len(inflight) >= window:
                break
        if not inflight:
            break
        done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
        for future in done:
            item = inflight.pop(future)
            meta: dict | None = None
            error: EngineError | str | None = None  # a str: the result came but could not be written
            try:
                result = future.result()
                meta = result.meta
                write_new(item.output, result.data, overwrite=overwrite)
            except EngineError as exc:
                error = exc
            except FileExistsError:
                error = f"{item.output} appeared while the batch ran; left as it is (use --overwrite)"
            except OSError as exc:
                error = f"could not write {item.output}: {exc}"
            _finish(item, error, meta, outcome, meta_out, bar)


def _finish(item: Item, error: EngineError | str | None, meta: dict | None, outcome: Outcome,
            meta_out: IO[str] | None, bar: Any, code: str = WRITE_FAILED) -> None:
    """Count one image as written or failed, say a failure, and write its --meta line."""
    if error is None:
        outcome.written.append(item.output)
    else:
        outcome.failed.append((item.source, str(error)))
        bar.write(f"failed: {item.source}: {error}", file=sys.stderr)
    if meta_out is not None:
        meta_out.write(_meta_line(item, error is None, meta, error, code) + "\n")
    bar.update(1)
