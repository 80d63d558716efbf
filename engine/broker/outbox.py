"""Replies waiting for a peer that does not read them: per-peer backlogs, bounded. No sockets.

The front ends send each reply without blocking to a socket whose per-peer queue in
libzmq is short (``REPLY_PIPE_MESSAGES``); a reply libzmq will not take now (the peer
does not read, so its pipe is full) waits here, in order, counted against that peer in
tasks and bytes. Past the *refuse* limits the peer's new tasks are refused (``busy``);
past the *drop* limits its oldest waiting replies are dropped (and logged by the caller).
A backlog is retried with back-off, so a peer that never reads costs a few wake-ups a
second, not a busy loop.

    outbox = Outbox(UnreadLimits(refuse_bytes=64 << 20, drop_bytes=256 << 20, ...))
    dropped = outbox.hold(peer, frames, nbytes, now_s)   # libzmq said EAGAIN
    for peer in outbox.due(now_s): ...                   # try the head again
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

# The first retry comes soon: a client that reads, only in bursts (a window of 64 replies
# against a 32-message pipe), must not wait long. Measured with bench/broker_cpu.py (1 KiB,
# window 64, 2 echo workers): a first retry after 5 ms held the whole engine to 5,800 tasks/s;
# after 0.5 ms (the loop's 1 ms poll granularity, in practice) 30,800/s. A client that never
# reads still costs a few wake-ups a second once the back-off has doubled up to RETRY_MAX_S.
RETRY_MIN_S = 0.0005
RETRY_MAX_S = 0.5


@dataclass(frozen=True, kw_only=True)
class UnreadLimits:
    refuse_bytes: int
    drop_bytes: int
    refuse_tasks: int
    drop_tasks: int


@dataclass(eq=False)
class Backlog:
    items: deque = field(default_factory=deque)  # (frames, nbytes), oldest first
    nbytes: int = 0
    retry_at_s: float = 0.0
    backoff_s: float = RETRY_MIN_S


def frames_bytes(frames: list) -> int:
    return sum(len(f) for f in frames)


class Outbox:
    def __init__(self, limits: UnreadLimits) -> None:
        self.limits = limits
        self.backlogs: dict[Hashable, Backlog] = {}
        self.total_bytes = 0
        self.dropped = 0  # replies dropped because their peer did not read

    def holding(self, peer: Hashable) -> bool:
        return peer in self.backlogs

    def refusal(self, peer: Hashable) -> str | None:
        """Why ``peer`` may not send new tasks now (its replies are not read), or None."""
        log = self.backlogs.get(peer)
        lim = self.limits
        if log is None or (log.nbytes < lim.refuse_bytes and len(log.items) < lim.refuse_tasks):
            return None
        return (f"{len(log.items)} result(s) ({log.nbytes / 2**20:.1f} MiB) are waiting for this client to read "
                f"them; read your results before sending more (limits: {lim.refuse_tasks} results, "
                f"{lim.refuse_bytes / 2**20:g} MiB)")

    def hold(self, peer: Hashable, frames: list, now_s: float) -> int:
        """Keep a reply libzmq would not take; returns how many old replies were dropped to stay bounded."""
        log = self.backlogs.get(peer)
        if log is None:
            log = self.backlogs[peer] = Backlog(retry_at_s=now_s + RETRY_MIN_S)
        nbytes = frames_bytes(frames)
        log.items.append((frames, nbytes))
        log.nbytes += nbytes
        self.total_bytes += nbytes
        dropped = 0
        lim = self.limits
        while len(log.items) > 1 and (log.nbytes > lim.drop_bytes or len(log.items) > lim.drop_tasks):
            _, old = log.items.popleft()
            log.nbytes -= old
            self.total_bytes -= old
            dropped += 1
        self.dropped += dropped
        return dropped

    def due(self, now_s: float) -> list[Hashable]:
        return [peer for peer, log in self.backlogs.items() if log.retry_at_s <= now_s]

    def next_due_s(self) -> float:
        return min((log.retry_at_s for log in self.backlogs.values()), default=float("inf"))

    def head(self, peer: Hashable) -> list | None:
        log = self.backlogs.get(peer)
        return log.items[0][0] if log else None

    def sent_head(self, peer: Hashable) -> None:
        """The head went out: forget it (and the backlog once empty), reset the back-off."""
        log = self.backlogs[peer]
        _, nbytes = log.items.popleft()
        log.nbytes -= nbytes
        self.total_bytes -= nbytes
        log.backoff_s = RETRY_MIN_S
        if not log.items:
            del self.backlogs[peer]

    def blocked(self, peer: Hashable, now_s: float) -> None:
        """The head could not go out: try again later, each time later still."""
        log = self.backlogs[peer]
        log.retry_at_s = now_s + log.backoff_s
        log.backoff_s = min(log.backoff_s * 2, RETRY_MAX_S)

    def forget(self, peer: Hashable) -> int:
        """The peer is gone: drop what waited for it; returns how many replies."""
        log = self.backlogs.pop(peer, None)
        if log is None:
            return 0
        self.total_bytes -= log.nbytes
        return len(log.items)

    def describe(self) -> dict[str, Any]:
        return {"peers": len(self.backlogs), "replies": sum(len(b.items) for b in self.backlogs.values()),
                "bytes": self.total_bytes, "dropped": self.dropped}
