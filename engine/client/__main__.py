"""python -m engine.client (engine-client): process files and folders of images through a broker."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

from ..errors import BrokerUnavailable, ConfigError, PipelineError, TaskTimeout
from ..handshake import local
from ..pipeline_syntax import check_syntax
from ..security import ENV_BROKER_KEY, ENV_CLIENT_KEY, PeerKeys
from ..settings import flag, positive_int, prog
from . import batch, outputs
from .summary import history_lines, summary
from .sync import Client

DESCRIPTION = """\
Send images (files, or folders of them) through a broker and write the results to OUTDIR.

Nothing is lost or replaced: each result keeps its input's path relative to the folder it
was found in (a file named directly goes to the top of OUTDIR), with the extension of its
new format; inputs that would land on the same name are told apart (a.jpg and a.png through
'edge|png' give a.png and a.jpg.png) or, if that cannot be done, refused before anything is
sent; an existing file is never replaced without --overwrite, and never an input. The
pipeline is checked once, before the first image, against the operations the broker's
workers offer. The progress bar is redrawn in place on a terminal; when stderr is not one, its
final line is printed once. The summary counts what the folders held and was not sent. Ctrl-C
stops the batch with a summary; every result written is whole, and --skip-existing resumes it.
Exits 0 when every result was written, 1 if any image failed, 2 when nothing was sent (bad
arguments, pipeline or broker), 130 when interrupted."""

EPILOG = """\
pipelines: steps separated by '|', parameters after ':' separated by ',':
  grayscale
  resize:width=640,height=480|sharpen:amount=1.5|webp:quality=80
  A format step (jpeg, png, webp, json) goes last and chooses the result's format and extension:
  json writes the metadata only (detections, sizes, timings) as NAME.json, no image.
  (engine-client --info --json lists the operations the broker's workers offer, with their parameters)

examples:
  engine-client --pipeline grayscale photos/ -o out/
  engine-client --pipeline 'edge|png' photos/ --recursive -o out/ --meta out/meta.jsonl
  engine-client --pipeline grayscale photos/ -o out/ --skip-existing   # resume after Ctrl-C
  engine-client --pipeline 'faces|json' photos/ -o out/   # metadata only: out/NAME.json per image
  engine-client --info

Every flag can also be set by the environment variable named in its help."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog("engine.client"), description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", type=Path, help="image files and folders")
    p.add_argument("-o", "--output", type=Path, help="folder for the results (created if missing)")
    flag(p, "--connect", env="ENGINE_CLIENT_CONNECT", default="tcp://127.0.0.1:5555",
         help="the broker's client endpoint")
    flag(p, "--pipeline", env="ENGINE_PIPELINE", default="grayscale", help="what to do to each image")
    flag(p, "--window", env="ENGINE_WINDOW", default=16, type=positive_int, help="tasks in flight at once")
    flag(p, "--timeout-s", env="ENGINE_TIMEOUT_S", default=120.0, type=float, help="per image, from sending to result")
    flag(p, "--recursive", env="ENGINE_RECURSIVE", default=False,
         help="descend into sub-folders (without it they are skipped; the summary counts what was skipped: "
              "folders, broken links, unreadable files, files that are not images)")
    flag(p, "--overwrite", env="ENGINE_OVERWRITE", default=False,
         help="replace results that already exist in OUTDIR (inputs are never replaced)")
    flag(p, "--skip-existing", env="ENGINE_SKIP_EXISTING", default=False,
         help="leave the inputs whose result is already in OUTDIR alone and count them (resumes an "
              "interrupted batch; --meta is appended to)")
    flag(p, "--meta", env="ENGINE_META", default=None, type=Path, metavar="FILE.jsonl",
         help="write one JSON line per image: input, output, and the result's metadata (format, sizes, "
              "timings, worker, detections) or its error")
    flag(p, "--connect-timeout-s", env="ENGINE_CONNECT_TIMEOUT_S", default=10.0, type=float,
         help="give up at once if no broker answers within this (on a loopback address nothing listening "
              "is known at once: said within a second)")
    flag(p, "--key", env=ENV_CLIENT_KEY, default="",
         help="CURVE: this client's secret key file (python -m engine.keys new NAME) (empty: plaintext)")
    flag(p, "--broker-key", env=ENV_BROKER_KEY, default="", help="CURVE: the broker's public key file (broker.key)")
    p.add_argument("--info", action="store_true", help="print a summary of the broker's workers, queue and "
                                                       "throughput, then exit")
    p.add_argument("--json", action="store_true", help="with --info: print the broker's whole answer as JSON")
    p.add_argument("--history", action="store_true",
                   help="with --info: also the broker's last ten minutes, a line a minute (tasks completed and "
                        "failed, the longest queue); with --json, its samples under \"history\"")
    flag(p, "--quiet", env="ENGINE_QUIET", default=False, help="no progress bar")
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def broker_info(client: Client, timeout_s: float, consequence: str = "", *, history: bool = False) -> dict | None:
    """The broker's INFO, or None after saying on stderr that nobody answered (and
    ``consequence``). On a local address a refused connection is known at once: that is said
    within a second (``core.REFUSED_INFO_S``). A remote broker gets ``timeout_s``, said up front."""
    if not local(client.address):
        print(f"waiting up to {timeout_s:g} s for the broker at {client.address} (--connect-timeout-s)",
              file=sys.stderr)
    try:
        return client.info(timeout_s, history=history)
    except BrokerUnavailable as exc:  # nothing listens at a local address
        fail(f"{exc}, or give --connect" + consequence)
        return None
    except TaskTimeout:
        fail(f"no broker answered at {client.address} within {timeout_s:g} s; is one running? "
             "(start one with: engine-broker --local-workers 2, which is python -m engine.broker, or make run)"
             + consequence)
        return None


def show_info(args: argparse.Namespace, keys: PeerKeys | None) -> int:
    with Client(args.connect, timeout_s=args.timeout_s, keys=keys) as client:
        info = broker_info(client, args.connect_timeout_s, history=args.history)
    if info is None:
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(summary(info, args.connect))
        if args.history:
            history = info.get("history")
            print("\n".join(history_lines(history) if isinstance(history, dict)
                            else ["history: this broker keeps none (an older version?)"]))
    return 0


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before or after the batch itself (which counts what it did)
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def _main(argv=None) -> int:
    args = parse_args(argv)
    if args.skip_existing and args.overwrite:
        return fail("--skip-existing keeps the results that are there and --overwrite replaces them: choose one")
    try:
        keys = PeerKeys.from_files(args.key, args.broker_key, key_env=ENV_CLIENT_KEY)
    except ConfigError as exc:
        return fail(str(exc))
    if args.info:
        return show_info(args, keys)
    if not args.inputs or args.output is None:
        return fail("give images or folders, and -o OUTDIR (see --help)")
    try:
        check_syntax(args.pipeline)  # needs no broker; the operations are checked against its INFO below
        left_out: Counter = Counter()
        found = outputs.find_images(args.inputs, args.recursive, skip_under=args.output, skipped=left_out)
        if not found:
            return fail("no images found (looked for " + ", ".join(sorted(outputs.IMAGE_SUFFIXES)) + ")"
                        + (f"; {outputs.skipped_text(left_out)}" if left_out else ""))
    except PipelineError as exc:
        return fail(f"{exc.message}\n(nothing was sent)")
    except outputs.PlanError as exc:
        return fail(str(exc))
    started_s = time.monotonic()
    with Client(args.connect, timeout_s=args.timeout_s, keys=keys) as client:
        info = broker_info(client, args.connect_timeout_s, "\n(nothing was sent: the pipeline is checked against the "
                                                           "operations the broker's workers offer)")
        if info is None:
            return 2
        try:
            items, skipped = _plan(args, found, batch.check_pipeline(args.pipeline, info))
        except PipelineError as exc:
            return fail(f"{exc.message}\n(nothing was sent; engine-client --info --json lists what the workers offer)")
        except outputs.PlanError as exc:
            return fail(str(exc))
        if args.meta is not None and args.meta.exists() and not (args.overwrite or args.skip_existing):
            return fail(f"{args.meta} already exists; choose another --meta file, or add --overwrite")
        with _meta_file(args.meta, "w" if args.overwrite else "a" if args.skip_existing else "x") as meta_out:
            outcome = batch.run(client, items, args.pipeline, window=args.window, overwrite=args.overwrite,
                                meta_out=meta_out, quiet=args.quiet)
    elapsed_s = time.monotonic() - started_s
    done = len(outcome.written) + len(outcome.failed)
    print(f"{len(items) + skipped} image(s), {len(outcome.failed)} failed, {len(outcome.written)} written"
          + (f", {skipped} skipped (already in {args.output})" if skipped else "")
          + (f", {len(items) - done} not finished" if outcome.interrupted else "")
          + f", {elapsed_s:.2f} s, {done / elapsed_s:.3g} images/s -> {args.output}"
          + (f" (metadata: {args.meta})" if args.meta else ""))
    if left_out:  # what the input folders hold that was not sent
        print(outputs.skipped_text(left_out))
    if outcome.interrupted:
        print(f"interrupted: {len(items) - done} image(s) not finished; every result written is whole. To resume, "
              "run the same command with --skip-existing", file=sys.stderr)
        return INTERRUPTED
    return 1 if outcome.failed else 0


def _plan(args: argparse.Namespace, found: list[tuple[Path, Path]], format_step: str | None
          ) -> tuple[list[outputs.Item], int]:
    """Where each result goes, and how many inputs are skipped (already done)."""
    if args.skip_existing:
        return outputs.pending(found, args.output, format_step)
    return outputs.plan(found, args.output, format_step, overwrite=args.overwrite), 0


@contextlib.contextmanager
def _meta_file(path: Path | None, mode: str):
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode, encoding="utf-8") as f:
        yield f


if __name__ == "__main__":
    raise SystemExit(main())
