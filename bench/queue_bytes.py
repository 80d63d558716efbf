"""The broker's memory while one client queues big images with no worker connected (issue 24,
item 2): RSS before and after, and how many tasks were refused ``busy``.

    PYTHONPATH=$PWD python bench/queue_bytes.py --images 50 --image-mb 20

Run it from a checkout of any version (it uses only flags every version has: the defaults).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import psutil
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers.engine import broker_ready, start_broker
from engine import protocol as P


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--image-mb", type=float, default=20.0)
    args = p.parse_args()
    broker, front, _back = start_broker(0, [])
    ctx = zmq.Context()
    try:
        broker_ready(front, 0)
        proc = psutil.Process(broker.pid)
        before_mib = proc.memory_info().rss / 2**20
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(front)
        image = os.urandom(int(args.image_mb * 2**20))
        busy, peak_mib = 0, before_mib
        for n in range(args.images):
            sock.send_multipart(P.encode(P.Request(task_id=f"t{n}", pipeline="noop"), image))
            sock.send_multipart(P.encode(P.Heartbeat()))
            while sock.poll(50):
                msg, _ = P.decode(sock.recv_multipart())
                busy += isinstance(msg, P.Error) and msg.code == "busy"
            peak_mib = max(peak_mib, proc.memory_info().rss / 2**20)
        end_s = time.monotonic() + 3
        while time.monotonic() < end_s:
            sock.send_multipart(P.encode(P.Heartbeat()))
            while sock.poll(200):
                msg, _ = P.decode(sock.recv_multipart())
                busy += isinstance(msg, P.Error) and msg.code == "busy"
            peak_mib = max(peak_mib, proc.memory_info().rss / 2**20)
        print(f"{args.images} x {args.image_mb:g} MiB queued by one client, no worker: broker RSS "
              f"{before_mib:.0f} -> peak {peak_mib:.0f} MiB; {busy} refused busy")
    finally:
        broker.terminate()
        broker.wait(30)
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
