"""File descriptors: as many as the host allows, and one warning before they run out.

Every TCP connection to a broker costs one descriptor, whether or not it ever speaks ZMTP.
With the usual soft limit of 1,024, about a thousand idle connections used to leave libzmq
unable to accept anyone else (its I/O thread retrying ``accept`` at full speed). So a long-
running process raises its soft limit to the hard one at start (``raise_soft_limit``), and
``Watch`` logs once when the descriptors in use pass ``NEAR_FRACTION`` of it, saying what
to do. Connections that never finish the ZMTP handshake are closed after the broker's
``HANDSHAKE_TIMEOUT_MS`` (``engine.sockutil``); a firewall or proxy in front bounds
connections per address (docs/operations-guide.md, "Descriptors").
"""
from __future__ import annotations

import logging
import os

try:
    import resource
except ImportError:  # not a Unix: nothing to raise
    resource = None  # type: ignore[assignment]

NEAR_FRACTION = 0.8  # warn when this share of the soft limit is in use
CHECK_EVERY_S = 5.0  # how often ``Watch`` counts the descriptors in use (one directory listing)
FD_DIR = "/proc/self/fd"

log = logging.getLogger("engine.fdlimit")


def raise_soft_limit(want: int | None = None) -> tuple[int, int] | None:
    """Raise this process's soft descriptor limit to ``want`` (None: as high as allowed), never
    past the hard limit and never down; returns (soft, hard) as they are now (``RLIM_INFINITY``
    as -1), or None where the limit cannot be read (not Unix)."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else 1 << 20
    wanted = ceiling if want is None else min(want, ceiling)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:  # a container may refuse: keep what we have, say so
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, exc)
    return soft, hard


def in_use() -> int | None:
    """Descriptors open in this process now (None where /proc is missing)."""
    try:
        return len(os.listdir(FD_DIR))
    except OSError:
        return None


class Watch:
    """Counts descriptors at most every ``CHECK_EVERY_S`` and warns once per crossing of
    ``NEAR_FRACTION`` of the soft limit (again only after falling below it)."""

    def __init__(self, what: str, limit: int | None = None) -> None:
        self.what = what
        if limit is None and resource is not None:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.limit = limit if limit and limit != getattr(resource, "RLIM_INFINITY", -1) else None
        self.near = False
        self._next_s = 0.0

    def check(self, now_s: float) -> None:
        if self.limit is None or now_s < self._next_s:
            return
        self._next_s = now_s + CHECK_EVERY_S
        used = in_use()
        if used is None:
            return
        near = used >= NEAR_FRACTION * self.limit
        if near and not self.near:
            log.warning("%s: %d of its %d file descriptors are open (each connection takes one); at the limit "
                        "new connections are refused. Raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd, "
                        "the container's nofile), or bound connections per address in a firewall or proxy "
                        "in front (docs/operations-guide.md, \"Descriptors\")", self.what, used, self.limit)
        self.near = near
