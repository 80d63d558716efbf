"""Measure what a link really delivers: ``ping`` for round trip, jitter and loss, and a
paced UDP stream for capacity (sent at 1.5x the link's rate; what arrives is the cap
less the loss). Run by the lab from the host namespaces; the two UDP ends are also
commands: ``python -m tools.edgelab.probe sink|source``.
"""
from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time

DATAGRAM_BYTES = 1400
SINK_IDLE_S = 1.0  # the stream is over when nothing arrives for this long
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_LOSS = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(ns: str, addr: str, *, count: int = 200, interval_s: float = 0.02) -> dict:
    """Round trip min/avg/max/mdev (ms) and loss (%) of ``count`` pings from ``ns``."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ping", "-q", "-c", str(count), "-i", str(interval_s),
                          "-W", "2", addr], capture_output=True, text=True, timeout=count * interval_s + 30).stdout
    sent, got = map(int, _LOSS.search(out).groups())
    rtt = _RTT.search(out)
    mn, avg, mx, mdev = map(float, rtt.groups()) if rtt else (None,) * 4
    return {"pings": sent, "loss_pct": round(100 * (sent - got) / sent, 2), "rtt_min_ms": mn, "rtt_avg_ms": avg,
            "rtt_max_ms": mx, "rtt_mdev_ms": mdev}


def sink(port: int, timeout_s: float) -> dict:
    """Count datagrams until the stream stops; Mbit/s over first to last arrival."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(timeout_s)
    print("ready", flush=True)
    got_bytes, first_s, last_s = 0, None, None
    try:
        while True:
            data = s.recv(65536)
            last_s = time.monotonic()
            first_s = first_s or last_s
            got_bytes += len(data)
            s.settimeout(SINK_IDLE_S)
    except TimeoutError:
        pass
    span_s = (last_s - first_s) if first_s and last_s and last_s > first_s else None
    return {"received_bytes": got_bytes, "mbit_s": round(got_bytes * 8 / span_s / 1e6, 2) if span_s else 0.0}


def source(addr: str, port: int, mbit_s: float, seconds: float) -> dict:
    """Send paced datagrams at ``mbit_s`` for ``seconds``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(DATAGRAM_BYTES)
    gap_s = DATAGRAM_BYTES * 8 / (mbit_s * 1e6)
    start_s = time.monotonic()
    sent = 0
    while (now_s := time.monotonic()) - start_s < seconds:
        due = int((now_s - start_s) / gap_s) + 1
        while sent < due:
            try:
                s.sendto(payload, (addr, port))
            except OSError:  # local queue full: the link is saturated, as intended
                pass
            sent += 1
        time.sleep(min(gap_s * 8, 0.002))
    return {"sent_bytes": sent * DATAGRAM_BYTES, "offered_mbit_s": mbit_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("sink", help="receive a UDP stream and print its rate")
    a.add_argument("--port", type=int, default=5999)
    a.add_argument("--timeout-s", type=float, default=20.0, help="give up if nothing arrives by then")
    b = sub.add_parser("source", help="send a paced UDP stream")
    b.add_argument("--to", required=True, help="ADDR:PORT")
    b.add_argument("--mbit-s", type=float, required=True)
    b.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.cmd == "sink":
        print(json.dumps(sink(args.port, args.timeout_s)), flush=True)
    else:
        addr, port = args.to.rsplit(":", 1)
        print(json.dumps(source(addr, int(port), args.mbit_s, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
