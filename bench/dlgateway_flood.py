"""The deep-learning gateway under a flood of large bad frames: its peak RSS, and a normal
request's round trip meanwhile.

    python bench/dlgateway_flood.py [--flooders 4] [--frame-mb 32] [--duration-s 15]

Starts a broker with one local worker and ``python -m engine.dlgateway`` (from this
checkout), then FLOODERS DEALERs each send frames of FRAME_MB (valid JSON, a payload that is
not base64, by default from its first character) as fast as the gateway takes them, while one
older client sends a real photo every PAUSE_S on a fresh DEALER and times the answer. Prints the gateway's RSS before,
its peak (VmHWM) and the normal requests' latencies (median, max, answered / sent) before
and during the flood. Linux only (reads /proc). Nothing here is a pass/fail check.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.base import free_port

PHOTO = ROOT / "tests" / "data" / "astronaut.jpg"
REPLY_TIMEOUT_S = 60.0


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_broker(front: str, timeout_s: float = 60.0) -> None:
    from engine import Client
    from engine.errors import EngineError

    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            with Client(front, timeout_s=2.0) as client:
                if sum(w["free"] for w in client.info(2.0)["workers"]):
                    return
        except EngineError as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"the broker has no worker ready: {last!r}")


def normal_request(ctx: zmq.Context, endpoint: str, n: int, body_of) -> float | None:
    """One older client's round trip in ms, or None when no answer came within the timeout."""
    rid = f"normal-{n}"
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = rid.encode()
    sock.connect(endpoint)
    started = time.perf_counter()
    sock.send(body_of(rid))
    try:
        if not sock.poll(int(REPLY_TIMEOUT_S * 1000)):
            return None
        reply = json.loads(sock.recv())
        assert ("preds" in reply) != (body_of is _bad), reply
        return (time.perf_counter() - started) * 1000
    finally:
        sock.close()


def _bad(rid: str) -> bytes:
    """A small frame the gateway answers itself (its payload is not base64): its own round trip."""
    return json.dumps({"payload": "*", "_rid": rid}).encode()


def flood(ctx: zmq.Context, endpoint: str, n: int, frame: bytes, stop: threading.Event, sent: list[int]) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.sndhwm = 2  # paced by the gateway's reading: the flooder holds no queue of its own
    sock.routing_id = f"flood-{n}".encode()
    sock.connect(endpoint)
    while not stop.is_set():
        try:
            sock.send(frame, copy=False, flags=zmq.NOBLOCK)  # the same buffer each time
            sent[n] += 1
        except zmq.Again:
            time.sleep(0.005)
        while sock.poll(0):
            sock.recv()  # the gateway's error answers
    sock.close()


def latencies(ms: list[float | None]) -> str:
    got = [x for x in ms if x is not None]
    if not got:
        return f"none of {len(ms)} answered"
    return (f"median {statistics.median(got):.0f} ms, max {max(got):.0f} ms, "
            f"{len(got)}/{len(ms)} answered")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flooders", type=int, default=4, help="DEALERs sending large bad frames")
    p.add_argument("--frame-mb", type=float, default=32, help="size of each bad frame in MiB")
    p.add_argument("--duration-s", type=float, default=15.0, help="seconds of flood")
    p.add_argument("--bad-at", choices=("start", "end"), default="start",
                   help="where the payload's one non-base64 character is (end: the gateway decodes all of it)")
    p.add_argument("--pause-s", type=float, default=0.5, help="seconds between normal requests")
    p.add_argument("--gateway-arg", action="append", default=[], help="extra flag for the gateway (repeatable)")
    a = p.parse_args()

    front, back, bind = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    procs = [_start(["-m", "engine.broker", "--front", front, "--back", back, "--local-workers", "1",
                     "--cache-mb", "0", "--log-level", "warning"])]
    try:
        _wait_broker(front)
        gateway = _start(["-m", "engine.dlgateway", "--bind", bind, "--connect", front, "--log-level", "warning",
                          *a.gateway_arg])
        procs.append(gateway)
        photo = base64.b64encode(PHOTO.read_bytes()).decode()

        def body_of(rid: str) -> bytes:
            return json.dumps({"payload": photo, "_rid": rid}).encode()

        ctx = zmq.Context()
        assert normal_request(ctx, bind, 0, body_of) is not None, "the gateway does not answer"  # warm: models
        quiet = [normal_request(ctx, bind, n, body_of) for n in range(1, 6)]
        quiet_own = [normal_request(ctx, bind, n, _bad) for n in range(6, 11)]
        rss_before = _status_mib(gateway.pid, "VmRSS")
        good = "A" * (int(a.frame_mb * 2**20 - 32) // 4 * 4 - 4)
        frame = json.dumps({"_rid": "x", "payload": "*AAA" + good if a.bad_at == "start" else good + "AAA*"}).encode()
        stop, sent = threading.Event(), [0] * a.flooders
        threads = [threading.Thread(target=flood, args=(ctx, bind, n, frame, stop, sent), daemon=True)
                   for n in range(a.flooders)]
        for t in threads:
            t.start()
        during, own, n = [], [], 100
        end = time.monotonic() + a.duration_s
        while time.monotonic() < end and gateway.poll() is None:
            during.append(normal_request(ctx, bind, n, body_of))
            own.append(normal_request(ctx, bind, n + 1, _bad))
            n += 2
            time.sleep(a.pause_s)
        alive = gateway.poll() is None
        peak = _status_mib(gateway.pid, "VmHWM") if alive else float("nan")
        stop.set()
        for t in threads:
            t.join(10)
        ctx.destroy(linger=0)
        print(f"gateway flags: {' '.join(a.gateway_arg) or '(defaults)'}; the bad character at the {a.bad_at}")
        print(f"flood: {a.flooders} DEALERs x {len(frame) / 2**20:.1f} MiB frames for {a.duration_s:.0f} s, "
              f"{sum(sent)} frames sent ({sum(sent) * len(frame) / 2**30:.1f} GiB)")
        print(f"gateway RSS before the flood {rss_before:.0f} MiB, peak {peak:.0f} MiB"
              + ("" if alive else " (the gateway died)"))
        print(f"normal request, quiet: {latencies(quiet)}")
        print(f"normal request, during the flood: {latencies(during)}")
        print(f"small bad request (the gateway's own answer), quiet: {latencies(quiet_own)}")
        print(f"small bad request (the gateway's own answer), during the flood: {latencies(own)}")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


if __name__ == "__main__":
    main()
