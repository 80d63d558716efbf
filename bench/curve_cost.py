"""What CURVE costs: the same batch through a plaintext broker and a CURVE broker.

    .venv/bin/python bench/curve_cost.py                      # 300 grayscale tasks, 2 worker processes
    .venv/bin/python bench/curve_cost.py --pipeline noop      # transport only: the worst case for CURVE
    .venv/bin/python bench/curve_cost.py --tasks 600 --rounds 9

Each round runs both brokers one after the other (alternating which goes first), each
with ``--local-workers N`` and the sample photos of tests/data; the figure is the median
throughput over the rounds and the ratio CURVE / plaintext (1.0: free; 0.9: 10 % slower).
The keys are made in a temporary folder with ``python -m engine.keys``. ``python bench/run.py``
measures the same thing across every workload as its ``engine_curve`` peer.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.engine_curve import make_keys
from engine import Client
from engine.security import PeerKeys

PHOTOS = sorted((ROOT / "tests" / "data").glob("*.jpg"))
READY_TIMEOUT_S = 60.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(keys_dir: Path | None, client_keys: PeerKeys | None, args: argparse.Namespace) -> float:
    """Tasks per second for one batch through a fresh broker."""
    front, back = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
    cmd = [sys.executable, "-m", "engine.broker", "--front", front, "--back", back, "--local-workers",
           str(args.workers), "--cache-mb", "0", "--log-level", "warning"]
    if keys_dir is not None:
        cmd += ["--keys-dir", str(keys_dir), "--secure"]
    broker = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "ENGINE_LOG_LEVEL": "warning"})  # workers too
    try:
        with Client(front, timeout_s=120, keys=client_keys) as client:
            deadline_s = time.monotonic() + READY_TIMEOUT_S
            while sum(w["free"] for w in client.info(READY_TIMEOUT_S)["workers"]) < args.workers:
                if time.monotonic() > deadline_s:
                    raise TimeoutError("workers did not come up")
                time.sleep(0.2)
            images = [p.read_bytes() for p in PHOTOS]
            list(client.map(images, args.pipeline, window=args.window))  # warm up every pool process
            batch = [images[i % len(images)] for i in range(args.tasks)]
            started_s = time.perf_counter()
            done = sum(1 for _ in client.map(batch, args.pipeline, window=args.window))
            return done / (time.perf_counter() - started_s)
    finally:
        broker.terminate()
        broker.wait(30)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--workers", type=int, default=2, help="local worker processes")
    p.add_argument("--window", type=int, default=32, help="tasks in flight")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pipeline", default="grayscale")
    args = p.parse_args(argv)
    rates: dict[str, list[float]] = {"plaintext": [], "curve": []}
    with tempfile.TemporaryDirectory() as tmp:
        keys_dir, client_key = make_keys(Path(tmp))
        client_keys = PeerKeys.load(client_key, keys_dir / "broker.key")
        for r in range(args.rounds):
            order = ["plaintext", "curve"] if r % 2 == 0 else ["curve", "plaintext"]
            for mode in order:
                secure = mode == "curve"
                rate = run_once(keys_dir if secure else None, client_keys if secure else None, args)
                rates[mode].append(rate)
                print(f"round {r + 1} {mode:9}: {rate:7.1f} tasks/s", flush=True)
    plain, curve = statistics.median(rates["plaintext"]), statistics.median(rates["curve"])
    print(f"\n{args.tasks} x {args.pipeline!r} on {len(PHOTOS)} sample photos, {args.workers} worker processes, "
          f"window {args.window}, median of {args.rounds}:")
    print(f"plaintext {plain:.1f} tasks/s, CURVE {curve:.1f} tasks/s, ratio CURVE/plaintext {curve / plain:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
