"""Log lines a remote peer can trigger, bounded in lines per minute however many peers there are.

A line written for each refused CURVE key, each bad message or each reply dropped for a
peer that does not read lets anyone who can connect fill the disk, and the formatting
and writing slow the process down for everyone else. A ``LogBound`` stands for one such
kind of line. Within a window of ``window_s`` it writes the first ``lines`` events in
full, one per key (a peer retrying with the same key is written once), and only counts
the others: a counter and a set of at most ``keys`` keys, never formatted. When the
window is over, one summary line carries the counts:

    refused clients connections: 12035 in 21 s from at least 1024 key(s), 12025 of them not logged one by one
    (each key's first, up to 10 lines per 60 s)

so at most ``lines`` + 1 lines per window, whatever the number of keys. The summary
comes at the first event after the window, or at ``flush_due`` (the broker calls it at
each heartbeat) or ``flush_all`` (when it stops), whichever is first. ``log`` may be
called from any thread (the broker's ZAP handler runs in its own).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable

WINDOW_S = 60.0  # the summaries' period: the bound is in lines per WINDOW_S
LINES_PER_WINDOW = 10  # events of one kind written in full per window, then only counted
KEYS_COUNTED = 1024  # distinct keys counted exactly per window; beyond, the summary says "at least"

SUMMARY = ("%s: %d in %.0f s from %s%d %s(s), %d of them not logged one by one "
           "(each %s's first, up to %d lines per %.0f s)")

_live: weakref.WeakSet[LogBound] = weakref.WeakSet()
_live_lock = threading.Lock()


class LogBound:
    """One kind of line a peer can trigger: ``log(key, msg, *args)`` instead of ``logger.warning``."""

    def __init__(self, logger: logging.Logger, what: str, *, lines: int = LINES_PER_WINDOW,
                 window_s: float = WINDOW_S, keys: int = KEYS_COUNTED, by: str = "key", level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what  # the summary's subject, plural: "refused clients connections"
        self.by = by  # what a key is, in the summary: "key", "peer", "worker"
        self.lines = lines
        self.window_s = window_s
        self.keys_cap = keys
        self.level = level
        self.clock = clock
        self.total = 0  # events since the start, logged or not (for INFO)
        self._lock = threading.Lock()
        self._start_s: float | None = None  # the open window's first event; None: no window open
        self._events = 0
        self._keys: set[Hashable] = set()  # at most keys_cap
        self._logged: set[Hashable] = set()  # at most lines: the keys written in full this window
        with _live_lock:
            _live.add(self)

    def log(self, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Count one event from ``key``; write ``msg % args`` if this window's budget allows
        (and ``key`` was not written in it yet). True if it was written."""
        with self._lock:
            now_s, start_s = self.clock(), self._start_s
            summary = self._close(now_s, start_s) if start_s is not None and now_s >= start_s + self.window_s \
                else None
            if self._start_s is None:
                self._start_s = now_s
            self.total += 1
            self._events += 1
            if len(self._keys) < self.keys_cap:
                self._keys.add(key)
            write = len(self._logged) < self.lines and key not in self._logged
            if write:
                self._logged.add(key)
        if summary is not None:
            self.logger.log(self.level, *summary)
        if write:
            self.logger.log(self.level, msg, *args, exc_info=exc_info)
        return write

    def flush(self, now_s: float | None = None, *, final: bool = False) -> None:
        """Write the summary of a window that is over (``final``: of the open one, over or not)."""
        with self._lock:
            now_s, start_s = self.clock() if now_s is None else now_s, self._start_s
            if start_s is None or not (final or now_s >= start_s + self.window_s):
                return
            summary = self._close(now_s, start_s)
        if summary is not None:
            self.logger.log(self.level, *summary)

    def _close(self, now_s: float, start_s: float) -> tuple | None:
        """End the open window, begun at ``start_s`` (lock held); the summary's arguments if some
        events were not written."""
        seconds = min(now_s - start_s, self.window_s)
        events, keys, written = self._events, len(self._keys), len(self._logged)
        capped = keys >= self.keys_cap
        self._start_s, self._events = None, 0
        self._keys, self._logged = set(), set()
        if events == written:
            return None  # every one was written in full
        return (SUMMARY, self.what, events, seconds, "at least " if capped else "", keys, self.by,
                events - written, self.by, self.lines, self.window_s)


def flush_due() -> None:
    """The summaries of every window that is over (the broker calls this at each heartbeat)."""
    for bound in _bounds():
        bound.flush()


def flush_all() -> None:
    """Every summary, windows over or not (when the process stops)."""
    for bound in _bounds():
        bound.flush(final=True)


def _bounds() -> list[LogBound]:
    with _live_lock:
        return list(_live)
