"""Where the batch command line writes each result, decided before any image is sent.

Every input gets one planned output path under OUTDIR: its path relative to the folder it
was found in (or its bare name, for a file named on the command line), with the extension
of the format the pipeline will produce. Two inputs that would land on the same path are
told apart by keeping the input's own extension (``a.jpg`` and ``a.png`` through
``edge|png`` give ``a.png`` and ``a.jpg.png``); any clash left after that, an output that
already exists (unless ``overwrite``), and an output that is an input are refused before
any work starts, with every offending path named.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "json": ".json"}  # json: the metadata only
KEPT_SUFFIXES = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png", ".webp": ".webp"}  # else the engine writes PNG
LISTED_MAX = 5  # paths named in one refusal


class PlanError(ConfigError):
    """The batch cannot start: the message says which paths and what to do."""


@dataclass(frozen=True)
class Item:
    source: Path  # the input file
    output: Path  # where its result goes


def find_images(inputs: list[Path], recursive: bool, *, skip_under: Path | None = None,
                skipped: Counter | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to OUTDIR before the extension) for every image named or found in
    a folder, in a stable order. Files under ``skip_under`` (OUTDIR), when it is a sub-folder
    of an input folder, are left out, so a second run does not take the first one's results
    as inputs. What else a folder holds and is not sent is counted in ``skipped`` by why
    (``SKIP_REASONS``): sub-folders without ``recursive``, broken links, files this process
    cannot read, files that are not images."""
    skip = skip_under.resolve() if skip_under is not None else None
    skipped = Counter() if skipped is None else skipped
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            files = item.rglob("*") if recursive else item.iterdir()
            inner = skip if skip is not None and skip != item.resolve() else None  # OUTDIR inside this folder
            for f in sorted(files):
                if _under(f, inner) or (inner is not None and f.resolve() == inner):
                    continue
                why = _not_sent(f, recursive)
                if why is None:
                    found.append((f, f.relative_to(item)))
                elif why:
                    skipped[why] += 1
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise PlanError(f"no such file or folder: {item}")
    return found


SKIP_REASONS = {"folder": ("folder", "folders"), "broken link": ("broken link", "broken links"),
                "unreadable": ("unreadable file", "unreadable files"), "not an image": ("not an image", "not images")}


def _not_sent(f: Path, recursive: bool) -> str | None:
    """Why an entry of an input folder is not sent (a ``SKIP_REASONS`` key), "" for a folder
    ``rglob`` descends into itself, None for an image to send."""
    if f.is_dir():
        return "" if recursive else "folder"
    if not f.exists():
        return "broken link"  # (is_symlink, or an entry gone since it was listed)
    if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image"
    return None if os.access(f, os.R_OK) else "unreadable"


def skipped_text(skipped: Counter) -> str:
    """``skipped 3: 2 folders (use --recursive), 1 broken link``, or "" when nothing was."""
    parts = [f"{skipped[key]} {names[skipped[key] != 1]}" + (" (use --recursive)" if key == "folder" else "")
             for key, names in SKIP_REASONS.items() if skipped[key]]
    return f"skipped {sum(skipped.values())}: {', '.join(parts)}" if parts else ""


def _under(path: Path, folder: Path | None) -> bool:
    return folder is not None and folder in path.resolve().parents


def output_suffix(source: Path, format_step: str | None) -> str:
    """The extension of the result: the pipeline's last format step, else what the engine
    keeps (JPEG, PNG and WebP stay as they are; anything else becomes PNG)."""
    if format_step is not None:
        return EXTENSIONS.get(format_step, f".{format_step}")  # a format newer workers offer: its name
    return KEPT_SUFFIXES.get(source.suffix.lower(), ".png")


def plan(found: list[tuple[Path, Path]], outdir: Path, format_step: str | None, *,
         overwrite: bool = False) -> list[Item]:
    """One output per input, or PlanError naming every clash, existing file or input hit
    (``skip_existing``: see ``pending``)."""
    by_path: dict[Path, list[tuple[Path, Path]]] = defaultdict(list)
    for source, rel in found:
        by_path[outdir / rel.with_suffix(output_suffix(source, format_step))].append((source, rel))
    items: list[Item] = []
    for path, group in by_path.items():
        if len(group) == 1:
            items.append(Item(group[0][0], path))
            continue
        for source, rel in group:  # a.jpg + a.png -> a.png and a.jpg.png
            keeps_name = rel.suffix == path.suffix
            items.append(Item(source, path if keeps_name else outdir / rel.parent / (rel.name + path.suffix)))
    _refuse_clashes(items)
    _refuse_inputs_and_existing(items, overwrite)
    return sorted(items, key=lambda i: str(i.source))


def _listed(lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - LISTED_MAX} more" if len(lines) > LISTED_MAX else ""
    return "\n  " + "\n  ".join(lines[:LISTED_MAX]) + more


def _refuse_clashes(items: list[Item]) -> None:
    by_path: dict[Path, list[Path]] = defaultdict(list)
    for item in items:
        by_path[item.output].append(item.source)
    clashes = [f"{path} <- {', '.join(map(str, sources))}" for path, sources in by_path.items() if len(sources) > 1]
    if clashes:
        raise PlanError(f"{len(clashes)} output path(s) would be written by more than one input; nothing was "
                        f"sent:{_listed(clashes)}\nGive their common parent folder instead (outputs keep their "
                        "path relative to it), or process them in separate runs with different -o folders.")


def _refuse_inputs_and_existing(items: list[Item], overwrite: bool) -> None:
    sources = {item.source.resolve() for item in items}
    onto_inputs = [f"{item.output} is the input {item.source}" for item in items if item.output.resolve() in sources]
    if onto_inputs:
        raise PlanError(f"{len(onto_inputs)} result(s) would replace an input image; nothing was sent:"
                        f"{_listed(onto_inputs)}\nChoose an -o folder other than the input folder.")
    existing = [str(item.output) for item in items if item.output.exists()]
    if existing and not overwrite:
        raise PlanError(f"{len(existing)} output file(s) already exist; nothing was sent:{_listed(existing)}\n"
                        "Choose another -o folder, or add --overwrite to replace them.")


def pending(found: list[tuple[Path, Path]], outdir: Path, format_step: str | None) -> tuple[list[Item], int]:
    """``plan`` for a resumed batch: the items whose output is not there yet, and how many are."""
    items = plan(found, outdir, format_step, overwrite=True)
    left = [item for item in items if not item.output.exists()]
    return left, len(items) - len(left)


def _file_mode() -> int:
    """The mode a new file gets under this process's umask (``mkstemp`` gives 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_new(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename), with
    the permissions any new file gets here. Without ``overwrite`` a file that appeared since
    planning is left alone: FileExistsError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if the path exists: never replaces a file
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            with open(path, "xb") as f:
                f.write(data)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


FILE_MODE = _file_mode()  # read once, at import, in the main thread (umask is per process)
