"""The scenarios: who runs where, behind which link, what the batch is, what happens when.

Every scenario puts the broker and the client on LAN hosts and the workers (one pool
process each, credit sized to its link by the engine) on hosts
behind the scenario's links. Network scenarios use ``sleep:ms=N|grayscale``: the
test-only ``sleep`` operation (workers started with ``--test-ops`` in the lab) stands for N ms of work on
the device without loading the shared CPU, so the figures show the network. The
heterogeneous fleet uses real CPU work (``bilateral|bilateral``) because its slow worker
is slowed by a CPU quota.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerSpec:
    host: str
    link: str = "lan"
    cpu_pct: float | None = None  # a cgroup CPU quota, in % of one CPU (the slow device)


@dataclass(frozen=True)
class Event:
    at_s: float  # after the batch starts
    action: str  # "down" / "up" (a host's link), "broker_down" / "broker_up" (power cut, restart)
    host: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    workers: tuple[WorkerSpec, ...]
    pipeline: str
    tasks: int = 300
    window: int = 16
    events: tuple[Event, ...] = field(default_factory=tuple)
    width_px: int = 320  # the images' width (320 px: about 25 KB each; 48 px: about 1.5 KB)


NET = "sleep:ms=20|grayscale"
CPU = "bilateral|bilateral"
TWO_LAN = (WorkerSpec("w1"), WorkerSpec("w2"))

SCENARIOS = {s.name: s for s in (
    Scenario("lan", "two workers on the LAN (the reference)", TWO_LAN, NET),
    Scenario("wifi", "two workers behind Wi-Fi: 50 Mbit/s, 20 +- 5 ms, 1 % loss",
             (WorkerSpec("w1", "wifi"), WorkerSpec("w2", "wifi")), NET),
    Scenario("4g", "two workers behind 4G: 10 Mbit/s, 60 +- 20 ms, 2 % loss",
             (WorkerSpec("w1", "4g"), WorkerSpec("w2", "4g")), NET),
    Scenario("link-down", "worker w2's link down 15 s mid-batch (from 3 s to 18 s), then back",
             TWO_LAN, "sleep:ms=100|grayscale", events=(Event(3, "down", "w2"), Event(18, "up", "w2"))),
    Scenario("broker-restart", "the broker's host loses power at 2 s (every process killed, link down), "
             "is back at 5 s with a fresh broker", TWO_LAN, "sleep:ms=50|grayscale",
             events=(Event(2, "broker_down"), Event(5, "broker_up"))),
    Scenario("hetero", "two fast workers and one about 10x slower (cgroup quota: 10 % of a CPU), CPU-bound tasks",
             (WorkerSpec("w1"), WorkerSpec("w2"), WorkerSpec("slow", cpu_pct=10)), CPU),
    Scenario("hetero-fast", "the same batch on the two fast workers alone (the baseline of item 4's target)",
             TWO_LAN, CPU),
    Scenario("single-lan", "one worker on the LAN (item 3's reference)", (WorkerSpec("w1"),), NET,
             tasks=200),
    Scenario("single-4g", "one worker behind 4G (item 3's gap)", (WorkerSpec("w1", "4g"),), NET,
             tasks=200),
    Scenario("single-lan-small", "one worker on the LAN, 48-px images (item 3's latency-bound reference)",
             (WorkerSpec("w1"),), NET, tasks=200, width_px=48),
    Scenario("single-4g-small", "one worker behind 4G, 48-px images: the round trip, not the bandwidth, "
             "limits it", (WorkerSpec("w1", "4g"),), NET, tasks=200, width_px=48),
)}
