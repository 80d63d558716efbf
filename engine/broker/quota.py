"""Per-client limits: tasks in flight and request rate, checked as each task arrives.

A client is its identity: with CURVE, the name of its key in the allow-list (so
a rotated key keeps its quota); without, its routing id, which the client chooses
itself and which therefore limits a careless client, never a hostile one. The rate is a
token bucket per client: ``rate_per_s`` tokens a second, at most ``burst`` saved up.
No sockets here: the broker asks ``check`` and answers ERROR quota with its text.
"""
from __future__ import annotations

from dataclasses import dataclass

FORGET_AFTER_S = 300.0  # an idle client with nothing in flight is forgotten after this


@dataclass(eq=False)
class Usage:
    tokens: float
    stamp_s: float  # when the tokens were counted
    seen_s: float = 0.0  # its last task
    received: int = 0
    refused: int = 0


@dataclass(frozen=True, kw_only=True)
class QuotaLimits:
    max_in_flight: int = 0  # tasks one client may have at the broker at once (0: no limit)
    rate_per_s: float = 0.0  # tasks a second one client may send, on average (0: no limit)
    burst: int = 0  # tasks above the rate it may send at once (0: one second's worth)

    @property
    def bucket(self) -> float:
        return float(self.burst or max(1.0, self.rate_per_s))


class Quotas:
    def __init__(self, limits: QuotaLimits, *, max_clients: int = 10_000) -> None:
        self.limits = limits
        self.max_clients = max_clients  # records kept; past it the least recently seen one goes
        self.usage: dict[str, Usage] = {}

    def check(self, client: str, in_flight: int, now_s: float) -> str | None:
        """None if ``client`` may send one more task now, else why not (for ERROR quota)."""
        lim = self.limits
        use = self.usage.get(client)
        if use is None:
            if len(self.usage) >= self.max_clients:
                del self.usage[min(self.usage, key=lambda c: self.usage[c].seen_s)]  # O(n), only when full
            use = self.usage[client] = Usage(tokens=lim.bucket, stamp_s=now_s)
        use.received += 1
        use.seen_s = now_s
        if lim.max_in_flight and in_flight >= lim.max_in_flight:
            use.refused += 1
            return (f"client {client!r} has {in_flight} task(s) in flight; its limit is {lim.max_in_flight} "
                    "(broker flag --client-max-in-flight): wait for results before sending more")
        if lim.rate_per_s > 0:
            use.tokens = min(lim.bucket, use.tokens + (now_s - use.stamp_s) * lim.rate_per_s)
            use.stamp_s = now_s
            if use.tokens < 1.0:
                use.refused += 1
                return (f"client {client!r} sends faster than its quota of {lim.rate_per_s:g} task(s)/s "
                        f"(bursts of {lim.bucket:g}; broker flags --client-rate, --client-burst): slow down")
            use.tokens -= 1.0
        return None

    def forget_idle(self, now_s: float, in_flight: dict[str, int]) -> None:
        """Drop clients idle for FORGET_AFTER_S with nothing in flight (bounded memory)."""
        for client in [c for c, u in self.usage.items()
                       if now_s - u.seen_s > FORGET_AFTER_S and not in_flight.get(c)]:
            del self.usage[client]

    def describe(self, in_flight: dict[str, int], *, top: int, label=str) -> tuple[dict, int]:
        """The ``top`` busiest clients (in flight, then received): tasks in flight, received
        and refused, each under ``label(name)``; and how many clients there are in all."""
        names = set(self.usage) | {c for c, n in in_flight.items() if n}

        def row(c: str) -> dict:
            use = self.usage.get(c)
            return {"in_flight": in_flight.get(c, 0), "received": use.received if use else 0,
                    "refused": use.refused if use else 0}

        rows = {c: row(c) for c in names}
        busiest = sorted(rows, key=lambda c: (-rows[c]["in_flight"], -rows[c]["received"], c))[:top]
        return {label(c): rows[c] for c in busiest}, len(names)
