"""The delay line of one shaped link: a userspace process that carries Ethernet frames
between two TAP devices, holding each frame for the link's latency and jitter and
dropping a share of them at random.

The kernel here has no ``netem``, so this process stands in for it. It runs in the lab's
hub namespace, attached to two persistent TAP devices the lab created there: ``--hub-tap``
(a port of the lab's bridge) and ``--host-tap`` (moved into the host's namespace and
renamed ``eth0`` once this process has attached to it, printing ``ready``). Bandwidth is
not handled here: the lab puts a ``tbf`` qdisc on both TAP devices' egress, so frames
reach this process already paced.

Each direction is a FIFO: a frame leaves at ``max(arrival + delay + U(-jitter, +jitter),
departure of the frame before it)``, so frames are never reordered (TCP sees jitter as
variable delay, not as reordering; netem's default reorders). Loss is applied to each
direction independently (a round trip loses about twice the per-direction share).

    python -m tools.edgelab.shim --hub-tap t-w1 --host-tap x-w1 --delay-ms 60 --jitter-ms 20 --loss-pct 2
"""
from __future__ import annotations

import argparse
import collections
import fcntl
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME_BYTES = 65536
MAX_QUEUED_FRAMES = 4096  # per direction; beyond this a frame is dropped (a full buffer)


def open_tap(name: str) -> int:
    """Attach to the persistent TAP device ``name``; returns a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class Direction:
    """Frames read from ``src`` wait here until their departure time, then go to ``dst``."""

    def __init__(self, src: int, dst: int, *, delay_s: float, jitter_s: float, loss: float, rng: random.Random):
        self.src, self.dst = src, dst
        self.delay_s, self.jitter_s, self.loss = delay_s, jitter_s, loss
        self.rng = rng
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.last_departure_s = 0.0
        self.counts = collections.Counter()

    def take(self, now_s: float) -> None:
        for _ in range(256):
            try:
                frame = os.read(self.src, MAX_FRAME_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer device went down for a moment
                return
            self.counts["in"] += 1
            if self.loss and self.rng.random() < self.loss:
                self.counts["lost"] += 1
                continue
            if len(self.queue) >= MAX_QUEUED_FRAMES:
                self.counts["overflow"] += 1
                continue
            jitter_s = self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
            departure_s = max(now_s + max(0.0, self.delay_s + jitter_s), self.last_departure_s)
            self.last_departure_s = departure_s
            self.queue.append((departure_s, frame))

    def send_due(self, now_s: float) -> float | None:
        """Write every frame due by ``now_s``; returns when the next one is due."""
        while self.queue and self.queue[0][0] <= now_s:
            _, frame = self.queue.popleft()
            try:
                os.write(self.dst, frame)
                self.counts["out"] += 1
            except OSError:  # device down or its queue full: the frame is lost, as on a wire
                self.counts["dropped"] += 1
        return self.queue[0][0] if self.queue else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hub-tap", required=True, help="TAP device on the lab's bridge (already created)")
    p.add_argument("--host-tap", required=True, help="TAP device that becomes the host's eth0 (already created)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added in each direction")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="each frame's delay varies by up to this, uniformly")
    p.add_argument("--loss-pct", type=float, default=0.0, help="share of frames dropped in each direction, in %%")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from the OS)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    hub, host = open_tap(args.hub_tap), open_tap(args.host_tap)
    rng = random.Random(args.seed)
    spec = {"delay_s": args.delay_ms / 1000, "jitter_s": args.jitter_ms / 1000, "loss": args.loss_pct / 100, "rng": rng}
    dirs = (Direction(host, hub, **spec), Direction(hub, host, **spec))
    print("ready", flush=True)
    while not stop:
        now_s = time.monotonic()
        nexts = [t for t in (d.send_due(now_s) for d in dirs) if t is not None]
        timeout_s = max(0.0, min(nexts) - time.monotonic()) if nexts else 0.5
        try:
            ready, _, _ = select.select([host, hub], [], [], timeout_s)
        except InterruptedError:
            continue
        now_s = time.monotonic()
        for d in dirs:
            if d.src in ready:
                d.take(now_s)
    up, down = dirs
    print(f"up {dict(up.counts)} down {dict(down.counts)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
