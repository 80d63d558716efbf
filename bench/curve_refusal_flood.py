"""What a flood of refused CURVE handshakes costs the broker's log and an allowed client.

    .venv/bin/python bench/curve_refusal_flood.py                   # 20 s flood, 1 flooding process
    .venv/bin/python bench/curve_refusal_flood.py --flood-s 60 --flooders 2

A CURVE broker (``--secure``, one local worker) serves one allowed client, which sends a
small photo through ``noop`` one task at a time: first for BASELINE_S alone, then while
FLOODERS processes each connect DEALER after DEALER to the front (or, with ``--socket
back``, to the workers' socket), every one with a fresh
random key pair that no allow-list holds (no reconnect: one refused handshake per key,
RATE a second each). It prints the broker's log lines and bytes written during the
flood (and per minute), the summary lines written up to its stop, the refusals it counted
if its INFO has the counter, and the allowed client's round trip (median, p90, max) alone
and under the flood.
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.base import free_port
from bench.peers.engine_curve import make_keys
from engine import Client
from engine.security import PeerKeys

PHOTO = ROOT / "tests" / "data" / "chelsea.jpg"
READY_TIMEOUT_S = 60.0
HOLD_S = 1.0  # a flooding socket is closed this long after it connects


def flood(endpoint: str, broker_key: bytes, seconds: float, rate: float, counter) -> None:
    """Connect ``rate`` times a second with fresh keys for ``seconds``; each socket stays open
    HOLD_S (time for its handshake)."""
    import zmq

    ctx = zmq.Context()
    ctx.max_sockets = int(4 * rate * HOLD_S) + 64  # closed sockets count until libzmq's reaper is done
    open_socks: collections.deque = collections.deque()
    made = 0
    started_s = time.monotonic()
    while (now_s := time.monotonic()) < started_s + seconds:
        while open_socks and now_s - open_socks[0][0] > HOLD_S:
            open_socks.popleft()[1].close(linger=0)
        if made >= rate * (now_s - started_s):
            time.sleep(0.001)
            continue
        sock = ctx.socket(zmq.DEALER)
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = broker_key
        sock.reconnect_ivl = -1  # one handshake per key
        sock.connect(endpoint)
        open_socks.append((now_s, sock))
        made += 1
    for _, sock in open_socks:
        sock.close(linger=0)
    ctx.term()
    with counter.get_lock():
        counter.value += made


def round_trips(client: Client, image: bytes, seconds: float) -> list[float]:
    """Milliseconds per task, one task at a time, for ``seconds``."""
    trips = []
    end_s = time.monotonic() + seconds
    while time.monotonic() < end_s:
        started = time.perf_counter()
        client.submit(image, "noop").result(timeout=60)
        trips.append((time.perf_counter() - started) * 1000)
    return trips


def _show(name: str, trips: list[float]) -> str:
    return (f"{name}: {len(trips)} tasks, round trip median {statistics.median(trips):.1f} ms, "
            f"p90 {statistics.quantiles(trips, n=10)[-1]:.1f} ms, max {max(trips):.1f} ms")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flood-s", type=float, default=20.0, help="seconds of flood (default 20)")
    p.add_argument("--baseline-s", type=float, default=5.0, help="seconds of round trips before it (default 5)")
    p.add_argument("--flooders", type=int, default=1, help="flooding processes (default 1)")
    p.add_argument("--socket", choices=("front", "back"), default="front",
                   help="the broker socket flooded: front (clients, default) or back (workers)")
    p.add_argument("--rate", type=float, default=1000.0, help="connections per second per flooder (default 1000)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        keys_dir, client_key = make_keys(Path(tmp))
        front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        log_path = Path(tmp) / "broker.log"
        with open(log_path, "wb") as log_file:
            broker = subprocess.Popen(
                [sys.executable, "-m", "engine.broker", "--front", front, "--back", back, "--local-workers", "1",
                 "--cache-mb", "0", "--keys-dir", str(keys_dir), "--secure", "--log-level", "info"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            keys = PeerKeys.load(client_key, keys_dir / "broker.key")
            with Client(front, timeout_s=120, keys=keys) as client:
                deadline_s = time.monotonic() + READY_TIMEOUT_S
                while sum(w["free"] for w in client.info(READY_TIMEOUT_S)["workers"]) < 1:
                    if time.monotonic() > deadline_s:
                        raise TimeoutError("the worker did not come up")
                    time.sleep(0.2)
                image = PHOTO.read_bytes()
                round_trips(client, image, 1.0)  # warm up
                alone = round_trips(client, image, args.baseline_s)
                offset = len(log_path.read_bytes())
                made = mp.get_context("spawn").Value("q", 0)
                target = front if args.socket == "front" else back
                flooders = [mp.get_context("spawn").Process(
                    target=flood, args=(target, keys.server, args.flood_s, args.rate, made)) for _ in
                    range(args.flooders)]
                started_s = time.monotonic()
                for f in flooders:
                    f.start()
                flooded = round_trips(client, image, args.flood_s)
                for f in flooders:
                    f.join(60)
                elapsed_s = time.monotonic() - started_s
                during = log_path.read_bytes()[offset:]
                refused = (client.info(10)["security"].get("refused_connections") or {}).get(
                    "clients" if args.socket == "front" else "workers")
        finally:
            broker.terminate()
            broker.wait(30)
        lines = during.decode(errors="replace").splitlines()
        role = "clients" if args.socket == "front" else "workers"
        refusal_lines = sum(1 for line in lines if f"refused a {role} connection" in line)
        summaries = [line for line in log_path.read_bytes()[offset:].decode(errors="replace").splitlines()
                     if f"refused {role} connections:" in line]  # the open window's summary: as the broker stops
        print(f"flood: {args.flooders} process(es), {made.value} connections with fresh keys in {elapsed_s:.1f} s; "
              f"refusals the broker counted: {refused if refused is not None else 'no counter in INFO'}")
        print(f"broker log during the flood: {len(lines)} lines ({refusal_lines} about refusals), "
              f"{len(during)} bytes; {len(lines) * 60 / elapsed_s:.0f} lines/min")
        print(f"summary line(s), to the broker's stop: {len(summaries)}" + "".join(f"\n    {x}" for x in summaries))
        print(_show("alone      ", alone))
        print(_show("under flood", flooded))
        print(f"(load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
