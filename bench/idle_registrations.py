"""Throughput beside idle registrations (issue 24, item 3): one peer registers many slot-holding
workers that declare an operation nobody asks for, and heartbeats them all; a client meanwhile
runs ``noop`` on a small JPEG through one real local worker. Prints tasks/s with none and with
the idle ones, and what the broker's INFO says about them.

    PYTHONPATH=$PWD python bench/idle_registrations.py --idle 8000 --seconds 5

Run it from a checkout of any version (it uses only flags every version has).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

import cv2
import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers.engine import broker_ready, start_broker
from engine import Client
from engine import protocol as P

HEARTBEAT_S = 2.0
PER_PROCESS = 1000  # idle workers per attacker process


def _attacker(back: str, first: int, idle: int, ready: mp.Event, stop: mp.Event) -> None:
    """``idle`` DEALERs, 200 per host name, each with 840 slots of an operation nobody asks for."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = zmq.Context(io_threads=1)
    ctx.setsockopt(zmq.MAX_SOCKETS, idle + 100)
    socks = []
    for n in range(first, first + idle):
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.rcvhwm = 4
        sock.connect(back)
        sock.send_multipart(P.encode(P.Ready(capacity=840, host=f"idle-host-{n // 200}",
                                             ops={"idle_op": {"params": []}})))
        socks.append(sock)
    ready.set()
    while not stop.is_set():
        started = time.monotonic()
        for sock in socks:
            sock.send_multipart(P.encode(P.Heartbeat()), zmq.NOBLOCK)
            try:
                while True:
                    sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                pass
        stop.wait(max(0.0, HEARTBEAT_S / 2 - (time.monotonic() - started)))
    ctx.destroy(linger=0)


def _rate(front: str, seconds: float, image: bytes) -> float:
    with Client(front, timeout_s=60) as client:
        for f in [client.submit(image, "noop") for _ in range(20)]:
            f.result(60)
        done, window, end_s = 0, [], time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < end_s:
            while len(window) < 32:
                window.append(client.submit(image, "noop"))
            window.pop(0).result(60)
            done += 1
        for f in window:
            f.result(60)
        return done / (time.monotonic() - started)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=int, default=8000, help="idle workers the attacker registers")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds each throughput run lasts")
    p.add_argument("--no-hot-path", action="store_true", help="run the broker with --no-hot-path (all Python)")
    args = p.parse_args()
    image = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    broker, front, back = start_broker(1, ["--no-hot-path"] if args.no_hot_path else [])
    try:
        broker_ready(front, 2)
        _rate(front, 2.0, image)  # warm: the worker's process, the broker's memos
        base = _rate(front, args.seconds, image)
        stop = mp.Event()
        attackers = []
        for first in range(0, args.idle, PER_PROCESS):  # each socket takes ~3 descriptors
            ready = mp.Event()
            attackers.append(mp.Process(target=_attacker, args=(back, first, min(PER_PROCESS, args.idle - first),
                                                                 ready, stop)))
            attackers[-1].start()
            if not ready.wait(120):
                raise SystemExit("an attacker process did not start its sockets")
        time.sleep(2 * HEARTBEAT_S)
        with Client(front, timeout_s=30) as client:
            info = client.info()
        loaded = _rate(front, args.seconds, image)
        stop.set()
        for attacker in attackers:
            attacker.join(30)
        free = info.get("slots_free", sum(w.get("free", 0) for w in info.get("workers", [])))
        print(f"idle registrations tried: {args.idle}; INFO workers_total {info.get('workers_total')}, "
              f"slots_free {free}, workers_refused {info.get('workers_refused', 'n/a')}")
        print(f"noop tasks/s: {base:.0f} with none, {loaded:.0f} beside them ({loaded / base:.2f}x)")
    finally:
        broker.terminate()
        broker.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
