"""python -m engine.client: process files and folders of images through a broker."""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time
from pathlib import Path

from ..errors import ConfigError, EngineError, TaskTimeout
from ..security import ENV_BROKER_KEY, ENV_CLIENT_KEY, PeerKeys
from ..settings import flag, positive_int
from .sync import Client

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m engine.client",
        description="Send images (files, or folders of them) through a broker and write the results to "
                    "OUTDIR, keeping each file's path relative to the folder it was found in. Exits 1 if "
                    "any image failed.",
        epilog="Example: python -m engine.client --pipeline grayscale photos/ -o out/. "
               "Pipelines: 'edge', 'grayscale|png', or see python -m engine.ops. "
               "Every flag can also be set by the environment variable named in its help.")
    p.add_argument("inputs", nargs="*", type=Path, help="image files and folders")
    p.add_argument("-o", "--output", type=Path, help="folder for the results (created if missing)")
    flag(p, "--connect", env="ENGINE_CLIENT_CONNECT", default="tcp://127.0.0.1:5555", help="the broker's client endpoint")
    flag(p, "--pipeline", env="ENGINE_PIPELINE", default="grayscale", help="what to do to each image")
    flag(p, "--window", env="ENGINE_WINDOW", default=16, type=positive_int, help="tasks in flight at once")
    flag(p, "--timeout-s", env="ENGINE_TIMEOUT_S", default=120.0, type=float, help="per image, from sending to result")
    flag(p, "--recursive", env="ENGINE_RECURSIVE", default=False, help="descend into sub-folders")
    flag(p, "--connect-timeout-s", env="ENGINE_CONNECT_TIMEOUT_S", default=10.0, type=float,
         help="give up at once if no broker answers within this")
    flag(p, "--key", env=ENV_CLIENT_KEY, default="",
         help="CURVE: this client's secret key file (python -m engine.keys new NAME) (empty: plaintext)")
    flag(p, "--broker-key", env=ENV_BROKER_KEY, default="", help="CURVE: the broker's public key file (broker.key)")
    p.add_argument("--info", action="store_true", help="print the broker's workers, queue and operations, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def find_images(inputs: list[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """(file, path to write it under) for every image named or found in a folder."""
    found = []
    for item in inputs:
        if item.is_dir():
            files = item.rglob("*") if recursive else item.iterdir()
            found += [(f, f.relative_to(item)) for f in sorted(files)
                      if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return found


def broker_info(client: Client, timeout_s: float) -> dict | None:
    """The broker's INFO, or None after saying on stderr that nobody answered."""
    try:
        return client.info(timeout_s)
    except TaskTimeout:
        print(f"error: no broker answered at {client.address} within {timeout_s:g} s; is one running? "
              "(start one with: python -m engine.broker --local-workers 2)", file=sys.stderr)
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        keys = PeerKeys.from_files(args.key, args.broker_key, key_env=ENV_CLIENT_KEY)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.info:
        with Client(args.connect, timeout_s=args.timeout_s, keys=keys) as client:
            info = broker_info(client, args.connect_timeout_s)
            print(json.dumps(info, indent=2))
        return 0 if info is not None else 2
    if not args.inputs or args.output is None:
        print("error: give images or folders, and -o OUTDIR (see --help)", file=sys.stderr)
        return 2
    try:
        images = find_images(args.inputs, args.recursive)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not images:
        print("error: no images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")", file=sys.stderr)
        return 2
    started_s = time.monotonic()
    with Client(args.connect, timeout_s=args.timeout_s, keys=keys) as client:
        if broker_info(client, args.connect_timeout_s) is None:
            return 2
        failures = run_batch(client, images, args)
    elapsed_s = time.monotonic() - started_s
    print(f"{len(images)} image(s), {len(failures)} failed, {elapsed_s:.2f} s, "
          f"{len(images) / elapsed_s:.1f} images/s -> {args.output}")
    return 1 if failures else 0


def run_batch(client: Client, images: list[tuple[Path, Path]], args: argparse.Namespace) -> list:
    """Send every image with at most ``args.window`` in flight; write results; return the failures."""
    from tqdm import tqdm

    failures: list[tuple[Path, str]] = []
    with tqdm(total=len(images), unit="img", disable=args.quiet, file=sys.stderr) as bar:
        inflight: dict[cf.Future, tuple[Path, Path]] = {}
        todo = iter(images)
        while True:
            for src, rel in todo:
                inflight[client.submit(src.read_bytes(), args.pipeline)] = (src, rel)
                if len(inflight) >= args.window:
                    break
            if not inflight:
                break
            done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                src, rel = inflight.pop(future)
                try:
                    result = future.result()
                except EngineError as exc:
                    failures.append((src, str(exc)))
                    bar.write(f"failed: {src}: {exc}", file=sys.stderr)
                else:
                    out = args.output / rel.with_suffix(EXTENSIONS.get(result.format, rel.suffix))
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(result.data)
                bar.update(1)
    return failures


if __name__ == "__main__":
    raise SystemExit(main())
