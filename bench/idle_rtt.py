"""What a pause between messages costs: a bare pyzmq round trip, back to back and after idling.

    python bench/idle_rtt.py [--payload-kb 66] [--pause-ms 3] [--rounds 1500]

A ROUTER in this process sends a 3-frame message (routing id, a small header, a payload of
PAYLOAD_KB) to a DEALER in another process over loopback TCP, which answers with a small
message; this prints the round trip's p50, and the sending call's, with no pause between
round trips and with PAUSE_MS of sleep before each. No engine code runs: it is the floor
that libzmq, pyzmq and the machine set for one hop when tasks come one at a time (each
thread on the way has gone idle and must be woken). The engine's path has two such hops
(client to broker, broker to worker) and three Python processes; see docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers.base import free_port


def _answer(endpoint: str) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(b"hello")
    while True:
        frames = sock.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            break
        sock.send_multipart([b"h", b"r" * 100])
    sock.close(linger=0)
    ctx.term()


def measure(payload_bytes: int, pause_s: float, rounds: int) -> tuple[float, float]:
    """(round trip p50, send call p50) in microseconds, the first 10 % of rounds left out."""
    import zmq

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    peer = mp.get_context("spawn").Process(target=_answer, args=(endpoint,), daemon=True)
    peer.start()
    try:
        if not sock.poll(30_000):
            raise SystemExit("the answering process did not connect within 30 s")
        route, _hello = sock.recv_multipart()
        payload = os.urandom(payload_bytes)
        trips, sends = [], []
        for _ in range(rounds):
            if pause_s:
                time.sleep(pause_s)
            t0 = time.perf_counter()
            sock.send_multipart([route, b"h", payload], copy=False)
            t1 = time.perf_counter()
            if not sock.poll(10_000):
                raise SystemExit("no answer within 10 s")
            sock.recv_multipart(copy=False)
            trips.append((time.perf_counter() - t0) * 1e6)
            sends.append((t1 - t0) * 1e6)
        sock.send_multipart([route, b"stop"])
        peer.join(10)
    finally:
        sock.close(linger=0)
        ctx.term()
    skip = rounds // 10
    return statistics.median(trips[skip:]), statistics.median(sends[skip:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--payload-kb", type=float, default=66.0, help="payload per message [66, a photo-size JPEG]")
    p.add_argument("--pause-ms", type=float, default=3.0, help="sleep before each round trip in the second run [3]")
    p.add_argument("--rounds", type=int, default=1500, help="round trips per run [1500]")
    args = p.parse_args(argv)
    if args.rounds < 10 or args.payload_kb < 0 or args.pause_ms < 0:
        p.error("--rounds must be at least 10, sizes and pauses not negative")
    size = int(args.payload_kb * 1024)
    for pause_ms in (0.0, args.pause_ms):
        trip_us, send_us = measure(size, pause_ms / 1000, args.rounds)
        print(f"{size} B payload, {pause_ms:g} ms pause before each: round trip p50 {trip_us:.0f} us, "
              f"send call p50 {send_us:.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
