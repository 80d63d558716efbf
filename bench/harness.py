"""The run: every peer through every workload and image size, the same way, into one result.

Peers run one after another, never side by side, so each has the machine to itself
(except for whatever else the machine is doing: the fingerprint cannot see that).
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import workloads as W
from .fingerprint import fingerprint, target_name
from .measure import CpuSampler, Run, latency_summary, percentile
from .peers.base import Skip

SCHEMA = 1
RESULTS = Path(__file__).resolve().parent / "results"
PEERS = {
    "limit": "bench.peers.limit:Limit",
    "mp_pool": "bench.peers.mp_pool:MpPool",
    "engine": "bench.peers.engine:Engine",
    "engine_curve": "bench.peers.engine_curve:EngineCurve",
    "compat": "bench.peers.compat:Compat",
    "celery": "bench.peers.celery_peer:Celery",
    "dask": "bench.peers.dask_peer:Dask",
    "ray": "bench.peers.ray_peer:Ray",
}
REFERENCE = "engine"  # every peer is given as a ratio to this one
# Tasks in flight per worker process: deep enough that the slowest system to turn a task
# around (Celery: ~10 ms) keeps its workers busy; at 4 it had half its workers idle.
WINDOW_PER_WORKER = 16


@dataclass
class Settings:
    workers: int
    clients: int = 1
    window: int = 0  # tasks in flight across all clients; 0: WINDOW_PER_WORKER per worker
    duration_s: float = 5.0  # measured time per workload, after warm-up
    warmup_tasks: int = 0  # 0: 2 per worker
    probe_tasks: int = 200  # one-at-a-time tasks for the round-trip overhead
    workloads: list[str] = field(default_factory=lambda: list(W.PIPELINES))
    sizes: list[str] = field(default_factory=lambda: list(W.SIZES))
    peers: list[str] = field(default_factory=lambda: list(PEERS))
    broker: str | None = None  # an existing deployment's front endpoint
    capacity: bool = True
    capacity_duration_s: float = 3.0
    repeat: int = 1  # rounds over all peers; each figure is the median round
    mode: str = "full"

    def __post_init__(self) -> None:
        self.window = self.window or WINDOW_PER_WORKER * self.workers
        self.warmup_tasks = self.warmup_tasks or 2 * self.workers


class Progress:
    """One line, rewritten in place on a terminal, one line per step elsewhere."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()

    def say(self, text: str, *, step: bool = False) -> None:
        self.done += step
        line = f"[{self.done}/{self.total} {time.monotonic() - self.t0:5.1f}s] {text}"
        sys.stderr.write(f"\r\x1b[K{line}" if self.tty else f"{line}\n")
        sys.stderr.flush()

    def note(self, text: str, *, skipped: int = 0) -> None:
        """A line of its own; ``skipped``: cells that will not be measured (the counter counts them)."""
        self.done += skipped
        sys.stderr.write(f"\r\x1b[K{text}\n" if self.tty else f"{text}\n")
        sys.stderr.flush()


def load_peer(name: str, settings: Settings):
    module, _, cls = PEERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(
        workers=settings.workers, clients=settings.clients, broker=settings.broker)


def cell(peer, workload: W.Workload, images: W.ImageSet, run: Run, cpu: dict[str, float],
         cpu_s: dict[str, float], settings: Settings) -> dict:
    n = len(run.latencies_s)
    rate = n / run.wall_s
    return {
        "peer": peer.name, "workload": workload.name, "pipeline": workload.pipeline, "size": images.size,
        "workers": settings.workers, "clients": peer.clients, "window": settings.window,
        "tasks": n, "errors": len(run.errors), "cache_hits": run.cache_hits,
        "first_error": run.errors[0] if run.errors else None,
        "wall_s": round(run.wall_s, 3), "images_per_s": round(rate, 2),
        "mp_per_s": round(rate * images.mean_mp, 2), "megapixels_per_image": round(images.mean_mp, 3),
        "latency_ms": latency_summary(run.latencies_s),
        "pipeline_ms_p50": round(percentile(run.pipeline_ms, 50), 3) if run.pipeline_ms else None,
        "out_bytes_mean": round(run.out_bytes / n) if n else 0,
        "cpu_cores": cpu,
        "cpu_ms_per_image": {role: round(sec * 1000 / n, 3) for role, sec in cpu_s.items()} if n else {},
        "broker_cpu_us_per_task": round(cpu_s["broker"] * 1e6 / n, 1) if n and "broker" in cpu_s else None,
    }


def measured(peer, images: tuple[bytes, ...], pipeline: str, *, window: int, duration_s: float,
             warmup_tasks: int) -> tuple[Run, CpuSampler]:
    """Warm up (unmeasured), then one measured run with the CPU of the peer's processes sampled."""
    peer.measure(images, pipeline, window=window, duration_s=0, min_tasks=warmup_tasks)
    with CpuSampler(peer.roles) as sampler:
        run = peer.measure(images, pipeline, window=window, duration_s=duration_s, min_tasks=warmup_tasks)
    return run, sampler


def probe_overhead(peer, images: W.ImageSet, pipeline: str, settings: Settings) -> dict:
    """Round trip one task at a time, and minus the pipeline's own time: what the system adds."""
    run = peer.measure(images.images, pipeline, window=1, duration_s=0, min_tasks=settings.probe_tasks)
    out = {"pipeline": pipeline, "size": images.size, "tasks": len(run.latencies_s),
           **{f"latency_ms_p{q}": round(percentile(run.latencies_s, q) * 1000, 3) for q in (50, 95, 99)},
           "pipeline_ms_p50": None, "pipeline_ms_p99": None, "overhead_ms_p50": None, "overhead_ms_p95": None}
    if run.pipeline_ms and len(run.pipeline_ms) == len(run.latencies_s):
        extra = [lat * 1000 - p for lat, p in zip(run.latencies_s, run.pipeline_ms)]
        out.update(pipeline_ms_p50=round(percentile(run.pipeline_ms, 50), 3),
                   pipeline_ms_p99=round(percentile(run.pipeline_ms, 99), 3),
                   overhead_ms_p50=round(percentile(extra, 50), 3), overhead_ms_p95=round(percentile(extra, 95), 3))
    return out


def run_peer(peer, cells, image_sets, settings: Settings, progress: Progress, results: list) -> dict:
    """Start one peer, measure every cell, stop it. Returns its status entry."""
    reason = peer.missing()
    if reason:
        progress.note(f"skip {peer.name}: {reason}", skipped=len(cells))
        return {"status": "skipped", "reason": reason}
    progress.say(f"{peer.name}: starting")
    try:
        peer.start()
    except Exception as exc:  # Skip: cannot run here; anything else: broke while starting
        kind = "skipped" if isinstance(exc, Skip) else "failed"
        reason = str(exc) if isinstance(exc, Skip) else f"{type(exc).__name__}: {exc}"
        progress.note(f"{'skip' if isinstance(exc, Skip) else 'FAILED'} {peer.name}: {reason}", skipped=len(cells))
        peer.stop()
        return {"status": kind, "reason": reason[:500]}
    status = {"status": "ran", "label": peer.label, "notes": peer.notes()}
    if getattr(peer, "data_plane", None) is not None:
        status["data_plane"] = peer.data_plane
    try:
        for workload, size in cells:
            images = image_sets[size]
            progress.say(f"{peer.name} {workload.name} {size}: measuring {settings.duration_s:g} s")
            run, sampler = measured(peer, images.images, workload.pipeline, window=settings.window,
                                    duration_s=settings.duration_s, warmup_tasks=settings.warmup_tasks)
            row = cell(peer, workload, images, run, sampler.cores(), sampler.cpu_seconds(), settings)
            results.append(row)
            progress.say(f"{peer.name} {workload.name} {size}: {row['images_per_s']:.1f} img/s, "
                         f"p50 {row['latency_ms']['p50']:.1f} ms", step=True)
        if cells and settings.probe_tasks:
            workload, size = cells[0]
            status["round_trip"] = probe_overhead(peer, image_sets[size], workload.pipeline, settings)
    except Exception as exc:  # a peer that breaks mid-run is reported, the others still run
        progress.note(f"{peer.name} failed: {type(exc).__name__}: {exc}")
        status = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        peer.stop()
    return status


def median_rows(rows: list[dict]) -> list[dict]:
    """One row per peer, workload and size: the round with the median images/s (the lower
    middle one for an even count), with every round's images/s beside it."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["peer"], r["workload"], r["size"]), []).append(r)
    out = []
    for group in groups.values():
        ranked = sorted(group, key=lambda r: r["images_per_s"])
        row = dict(ranked[(len(ranked) - 1) // 2])
        row["rounds"] = len(group)
        row["images_per_s_rounds"] = [r["images_per_s"] for r in group]
        out.append(row)
    return out


def add_ratios(results: list[dict]) -> None:
    ref = {(r["workload"], r["size"], r["workers"]): r["images_per_s"] for r in results if r["peer"] == REFERENCE}
    for r in results:
        base = ref.get((r["workload"], r["size"], r["workers"]))
        r["ratio_to_engine"] = round(r["images_per_s"] / base, 3) if base else None


def run_all(settings: Settings, *, target: str | None = None, argv: list[str] | None = None) -> dict:
    fp = fingerprint()
    chosen = W.workloads(settings.workloads)
    image_sets = {size: W.image_set(size) for size in settings.sizes}
    cells = [(w, size) for w in chosen if w.pipeline for size in settings.sizes]
    progress = Progress(len(cells) * len(settings.peers) * settings.repeat)
    for w in chosen:
        if not w.pipeline:
            progress.note(f"skip workload {w.name}: {w.reason}")
    rows: list[dict] = []
    peers: dict[str, dict] = {}
    for round_no in range(settings.repeat):
        # Every other round in reverse, so a drift in the machine's load does not favour one end.
        order = settings.peers if round_no % 2 == 0 else settings.peers[::-1]
        for name in order:
            if peers.get(name, {}).get("status", "ran") != "ran":
                continue  # skipped or failed once: not tried again
            status = run_peer(load_peer(name, settings), cells, image_sets, settings, progress, rows)
            peers.setdefault(name, status)
            if status["status"] != "ran":
                peers[name] = status
    results = median_rows(rows)
    add_ratios(results)
    capacity = None
    if settings.capacity and "engine" in settings.peers and peers.get("engine", {}).get("status") == "ran":
        from .capacity import measure_capacity

        progress.say("broker capacity")
        capacity = measure_capacity(settings, progress)
    progress.note(f"done in {time.monotonic() - progress.t0:.0f} s")
    return {
        "schema": SCHEMA, "target": target or target_name(fp), "mode": settings.mode,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(argv or sys.argv), "settings": asdict(settings), "fingerprint": fp,
        "workloads": [asdict(w) for w in chosen],
        "image_sets": {s: {"images": len(i.images), "megapixels_mean": round(i.mean_mp, 3),
                           "bytes_mean": round(sum(map(len, i.images)) / len(i.images))}
                       for s, i in image_sets.items()},
        "peers": peers, "results": results, "capacity": capacity,
    }


def save(result: dict, out_dir: Path | None = None) -> Path:
    folder = out_dir or RESULTS / result["target"]
    folder.mkdir(parents=True, exist_ok=True)
    stamp = result["started_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = folder / f"{result['mode']}-w{result['settings']['workers']}-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
