"""A normal client beside many idle TCP connections to the broker's front (issue 24, item 8).
The broker starts with a soft open-file limit of 1,024 and a hard one of 4,096 (a common
default); the script opens ``--idle`` connections that never speak, then times ``grayscale``
round trips of a client for ``--seconds`` and reports how many were answered.

    PYTHONPATH=$PWD python bench/idle_connections.py --idle 1100 --seconds 15

Run it from a checkout of any version.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers.base import free_port
from bench.peers.engine import broker_ready
from engine import Client
from engine.errors import EngineError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=int, default=1100)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.idle + 512, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    fport = free_port()
    start = ("import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096)); "
             "runpy.run_module('engine.broker', run_name='__main__', alter_sys=True)")
    broker = subprocess.Popen([sys.executable, "-c", start, "--front", f"tcp://127.0.0.1:{fport}", "--back",
                               f"tcp://127.0.0.1:{free_port()}", "--local-workers", "1", "--log-level", "warning"])
    image = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    idle = []
    try:
        broker_ready(f"tcp://127.0.0.1:{fport}", 2)
        idle = [socket.create_connection(("127.0.0.1", fport), timeout=10) for _ in range(args.idle)]
        times_ms, failed = [], 0
        end_s = time.monotonic() + args.seconds
        while time.monotonic() < end_s:
            started = time.perf_counter()
            try:
                with Client(f"tcp://127.0.0.1:{fport}", timeout_s=3) as client:
                    client.process(image, "grayscale")
                times_ms.append((time.perf_counter() - started) * 1000)
            except EngineError:
                failed += 1
            time.sleep(0.2)
        med = f"{statistics.median(times_ms):.1f}" if times_ms else "-"
        top = f"{max(times_ms):.1f}" if times_ms else "-"
        print(f"{args.idle} idle connections: {len(times_ms)} new clients answered (connect + grayscale, median "
              f"{med} ms, max {top} ms), {failed} failed")
    finally:
        for s in idle:
            s.close()
        broker.terminate()
        broker.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
