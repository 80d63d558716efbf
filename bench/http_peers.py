"""python bench/http_peers.py: the engine's HTTP API against thumbor, on the same images and work.

examples:
    python bench/http_peers.py                              # both peers, concurrency 8 and 32, 20 s each
    python bench/http_peers.py --concurrency 8 --duration-s 10
    python bench/http_peers.py --peers engine --requests 200

The work, as in imgproxy's image-servers-benchmark: fit ~2K-pixel JPEGs (the sample
photographs scaled to a 2048-px long side, made in memory) into 512x512 and answer a JPEG
at quality 80. Each peer gets --processes worker processes: the engine is
``python -m engine.broker --local-workers N --web HOST:PORT`` and its /api/v1/process
(the image is the request body); thumbor is ``thumbor --processes N`` reading the same
files with its file loader, storage and result storage off, so every request does the work.
Peers run one after another. For each, every image is fetched once and checked (HTTP 200,
a JPEG of the expected size, PSNR against a direct OpenCV resize), then per concurrency
level: a warm-up, then the measured run with the same client (one keep-alive connection
per thread). A JSON result goes to bench/results/http/; the table gives requests/s, latency
p50/p99, the CPU cores the server, this client and everything else on the machine used
(on a shared machine, "other cores" is what the run lacked), and engine / thumbor.
thumbor is optional (pip install thumbor): without it the engine runs alone.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")  # as bench/run.py: one thread per worker process

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import comma_list, positive_ints
from bench.fingerprint import fingerprint, target_name
from bench.http_servers import BOX_PX, QUALITY, SERVERS, Server, expected_size, input_images
from bench.httpload import fetch, is_jpeg, run_load
from bench.peers.base import Skip

SCHEMA = 1
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "http"
GIT_TIMEOUT_S = 10.0
WARMUP_PER_CONNECTION = 4  # unmeasured requests per connection before each measured run
MIN_PSNR_DB = 30.0  # an answer this far from a direct OpenCV resize is not the same picture


def parse_args(argv=None) -> argparse.Namespace:
    title, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(prog="python bench/http_peers.py", description=title.split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=rest)
    p.add_argument("--peers", type=comma_list, default=list(SERVERS),
                   help=f"comma list from {', '.join(SERVERS)} [all]")
    p.add_argument("--concurrency", type=positive_ints, default=[8, 32],
                   help="requests in flight (client threads, one keep-alive connection each); a list runs "
                        "each level in turn [8,32]")
    p.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per peer and level [20]")
    p.add_argument("--requests", type=int, default=0,
                   help="measure this many requests per peer and level instead of --duration-s")
    p.add_argument("--warmup", type=int, default=0,
                   help=f"unmeasured requests before each measured run [{WARMUP_PER_CONNECTION} per connection]")
    p.add_argument("--processes", type=int, default=2, help="worker processes of each peer [2]")
    p.add_argument("--note", default="", help="a remark stored with the result, e.g. 'machine shared with a build'")
    p.add_argument("--out", type=Path, help=f"folder for the JSON result [{RESULTS}]")
    args = p.parse_args(argv)
    bad = [x for x in args.peers if x not in SERVERS]
    if bad:
        p.error(f"unknown peer(s): {', '.join(bad)}")
    if args.processes < 1 or args.requests < 0 or args.warmup < 0 or (args.requests == 0 and args.duration_s <= 0):
        p.error("--processes must be >= 1, --requests and --warmup >= 0, and --duration-s > 0 without --requests")
    return args


def source_state() -> dict:
    """The commit and the uncommitted files under engine/: what engine code the run measured."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    changed = git("status", "--porcelain", "--", "engine")
    return {"commit": git("rev-parse", "HEAD"), "engine_uncommitted": changed.splitlines() if changed != "unknown"
            else "unknown"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class MachineCpu:
    """Busy cores of the whole machine (every process, not only this run's) since creation."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._t0, self._cpu0 = time.perf_counter(), psutil.cpu_times()

    def busy_cores(self) -> float:
        cpu1, wall_s = self._psutil.cpu_times(), max(time.perf_counter() - self._t0, 1e-9)
        idle = ("idle", "iowait")
        spent = {f: getattr(cpu1, f) - getattr(self._cpu0, f) for f in cpu1._fields if f not in ("guest", "guest_nice")}
        return sum(v for f, v in spent.items() if f not in idle) / wall_s


def _progressive(jpeg: bytes) -> bool:
    """Whether the first start-of-frame marker is SOF2 (progressive); walks the marker segments."""
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return marker == 0xC2
        i += 2 + int.from_bytes(jpeg[i + 2:i + 4], "big")
    return False


def check_answers(server: Server) -> list[dict]:
    """Each image once, one at a time: HTTP 200, a JPEG, the size of a fit into the box, and
    close to a direct OpenCV resize of the same input (PSNR)."""
    import cv2
    import simplejpeg

    out = []
    for (name, data, size), request in zip(server.images, server.requests):
        status, headers, body = fetch("127.0.0.1", server.port, request)
        row = {"image": name, "input": list(size), "expected": list(expected_size(size)), "status": status,
               "content_type": headers.get("content-type"), "bytes": len(body), "jpeg": is_jpeg(body)}
        if status == 200 and row["jpeg"]:
            got = simplejpeg.decode_jpeg(body, colorspace="BGR")
            row["got"] = [got.shape[1], got.shape[0]]
            row["subsampling"] = simplejpeg.decode_jpeg_header(body)[3]
            row["progressive"] = _progressive(body)
            reference = cv2.resize(simplejpeg.decode_jpeg(data, colorspace="BGR"), tuple(row["expected"]),
                                   interpolation=cv2.INTER_AREA)
            row["psnr_db"] = round(cv2.PSNR(reference, got), 2) if got.shape == reference.shape else None
        row["ok"] = bool(row.get("got") == row["expected"] and (row.get("psnr_db") or 0) >= MIN_PSNR_DB)
        out.append(row)
    return out


def measure_peer(server: Server, args: argparse.Namespace) -> dict:
    """Start, check, measure every concurrency level, stop: the peer's part of the result."""
    from bench.measure import CpuSampler

    say(f"{server.name}: starting ({server.processes} processes)")
    server.start()
    checks = check_answers(server)
    if not all(c["ok"] for c in checks):
        raise Skip(f"wrong answers: {json.dumps([c for c in checks if not c['ok']])[:600]}")
    rows = []
    for concurrency in args.concurrency:
        warmup = args.warmup or WARMUP_PER_CONNECTION * concurrency
        run_load("127.0.0.1", server.port, server.requests, concurrency=concurrency, total=warmup)
        load_before = os.getloadavg()
        machine = MachineCpu()
        with CpuSampler(lambda: {**server.roles(), "client": [os.getpid()]}) as cpu:
            load = run_load("127.0.0.1", server.port, server.requests, concurrency=concurrency,
                            total=args.requests, duration_s=0 if args.requests else args.duration_s)
        busy = machine.busy_cores()
        cores = cpu.cores()
        cores["server"] = round(sum(v for role, v in cores.items() if role != "client"), 3)
        # What the rest of the machine used meanwhile: on a shared machine, the cores this run lacked.
        cores["machine_busy"] = round(busy, 3)
        cores["others"] = round(max(0.0, busy - cores["server"] - cores.get("client", 0.0)), 3)
        summary = load.summary()
        # Requests per second per busy server core: on a shared machine, a figure less bent by
        # what the others took than requests/s (it still feels their cache and memory traffic).
        summary["requests_per_server_core_s"] = round(summary["requests_per_s"] / max(cores["server"], 1e-9), 2)
        row = {**summary, "warmup_requests": warmup, "cpu_cores": cores,
               "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
        rows.append(row)
        lat = row["latency_ms"]
        say(f"{server.name}: concurrency {concurrency}: {row['requests_per_s']:.1f} req/s, p50 {lat['p50']:.1f} ms, "
            f"p99 {lat['p99']:.1f} ms, {row['errors']} errors")
    return {"status": "ran", "command": server.cmd, "notes": server.notes(), "versions": server.versions(),
            "checks": checks, "runs": rows}


def run_peer(name: str, images, workdir: Path, args: argparse.Namespace) -> dict:
    server = SERVERS[name](processes=args.processes, images=images, workdir=workdir)
    why = server.missing()
    if why:
        say(f"skip {name}: {why}")
        return {"status": "skipped", "reason": why}
    try:
        return measure_peer(server, args)
    except Exception as exc:  # one broken peer is reported, the others still run
        reason = str(exc) if isinstance(exc, Skip) else f"{type(exc).__name__}: {exc}"
        say(f"{name} failed: {reason}")
        return {"status": "failed", "reason": reason[:2000]}
    finally:
        with _uninterrupted():
            server.stop()


@contextlib.contextmanager
def _uninterrupted():
    """A second Ctrl-C during teardown must not leave processes behind: stop_group is bounded by
    its timeouts, so SIGINT and SIGTERM wait until it is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def ratios(peers: dict) -> list[dict]:
    """Each engine variant / thumbor per concurrency level: requests/s (above 1: the engine is
    faster) and latency."""
    thumbor = peers.get("thumbor", {})
    if thumbor.get("status") != "ran":
        return []
    other = {r["concurrency"]: r for r in thumbor["runs"]}
    out = []
    for name, engine in peers.items():
        if not name.startswith("engine") or engine.get("status") != "ran":
            continue
        for e in engine["runs"]:
            t = other.get(e["concurrency"])
            if t and t["requests_per_s"] and t["latency_ms"]["p50"]:
                out.append({"peer": name, "concurrency": e["concurrency"],
                            "requests_per_s": round(e["requests_per_s"] / t["requests_per_s"], 3),
                            "requests_per_server_core_s": round(e["requests_per_server_core_s"]
                                                                / max(t["requests_per_server_core_s"], 1e-9), 3),
                            "latency_p50": round(e["latency_ms"]["p50"] / t["latency_ms"]["p50"], 3),
                            "latency_p99": round(e["latency_ms"]["p99"] / max(t["latency_ms"]["p99"], 1e-9), 3)})
    return out


def table(result: dict) -> list[str]:
    lines = [f"{'peer':<14} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
             f"{'server cores':>12} {'req/s/core':>10} {'client cores':>12} {'other cores':>11}"]
    for name, peer in result["peers"].items():
        if peer["status"] != "ran":
            lines.append(f"{name:<14} {peer['status']}: {peer['reason'][:100]}")
            continue
        for r in peer["runs"]:
            cpu = r["cpu_cores"]
            lines.append(f"{name:<14} {r['concurrency']:>4} {r['requests_per_s']:>8.1f} "
                         f"{r['latency_ms']['p50']:>8.1f} "
                         f"{r['latency_ms']['p99']:>8.1f} {r['errors']:>6} {cpu.get('server', 0):>12.2f} "
                         f"{r['requests_per_server_core_s']:>10.1f} {cpu.get('client', 0):>12.2f} "
                         f"{cpu.get('others', 0):>11.2f}")
    for r in result["ratios"]:
        lines.append(f"{r['peer']} / thumbor at concurrency {r['concurrency']}: {r['requests_per_s']:.2f}x requests/s, "
                     f"{r['requests_per_server_core_s']:.2f}x requests/s per server core (above 1: the engine is "
                     f"faster), {r['latency_p50']:.2f}x p50, {r['latency_p99']:.2f}x p99 latency")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM unwind through run_peer's finally, so every peer's processes are stopped
    # (SIGINT too: a shell that starts this in the background has it ignored).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    fp = fingerprint()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
    images = input_images()
    result = {
        "schema": SCHEMA, "started_at": started_at, "target": target_name(fp), "fingerprint": fp,
        "command": ["python", "bench/http_peers.py", *(sys.argv[1:] if argv is None else argv)],
        "note": args.note, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "source": source_state(),
        "settings": {"peers": args.peers, "concurrency": args.concurrency, "processes": args.processes,
                     "duration_s": 0 if args.requests else args.duration_s, "requests": args.requests,
                     "warmup": args.warmup or f"{WARMUP_PER_CONNECTION} per connection",
                     "work": f"fit into {BOX_PX}x{BOX_PX}, JPEG quality {QUALITY}"},
        "images": [{"name": n, "width": s[0], "height": s[1], "bytes": len(d)} for n, d, s in images],
        "peers": {},
    }
    with tempfile.TemporaryDirectory(prefix="http-peers-") as tmp:
        for name in args.peers:
            workdir = Path(tmp) / name
            workdir.mkdir()
            result["peers"][name] = run_peer(name, images, workdir, args)
    result["ratios"] = ratios(result["peers"])
    result["finished_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
    folder = args.out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = folder / f"{result['target']}-c{'-'.join(map(str, args.concurrency))}-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(table(result)))
    print(f"\nwrote {path}")
    return 1 if any(p["status"] == "failed" for p in result["peers"].values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process this run started has been stopped", file=sys.stderr)
        sys.exit(130)
