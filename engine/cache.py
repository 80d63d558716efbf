"""A result cache: encoded outputs keyed by input hash, canonical pipeline and engine version.

Pure data structure, no sockets and no event loop, so the broker (or anyone) can own
one. Least recently used entries are evicted first once the stored bytes pass
``max_bytes``. Each entry is charged ``len(data)`` plus ``ENTRY_OVERHEAD_BYTES`` for
its key, metadata and bookkeeping, so millions of tiny results cannot escape the
bound. A lock guards every method: one instance may be shared between threads.

    cache = ResultCache(max_bytes=256 * 1024 * 1024)
    key = ResultCache.key(image_bytes, ops.canonical(pipeline), engine.__version__)
    hit = cache.get(key)            # (bytes, meta) or None; counts a hit or a miss
    if hit is None:
        cache.put(key, result, meta)
"""
from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from typing import Any

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 100_000
ENTRY_OVERHEAD_BYTES = 512  # charged per entry for the key, meta dict and list links


class ResultCache:
    """LRU of ``key -> (data, meta)`` bounded by bytes and entries, with hit/miss/eviction counters."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_bytes < 0 or max_entries < 1:
            raise ValueError(f"max_bytes must be >= 0 and max_entries >= 1, got {max_bytes}, {max_entries}")
        self.max_bytes = int(max_bytes)
        self.max_entries = int(max_entries)
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[bytes, dict]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(data: Any, canonical_pipeline: str, engine_version: str) -> str:
        """Hex key for an input (any bytes-like object), its canonical pipeline and the
        engine version. Each part is length-prefixed, so no two triples collide by
        shifting bytes between them."""
        h = hashlib.sha256()
        for part in (canonical_pipeline.encode(), engine_version.encode()):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        view = memoryview(data).cast("B")
        h.update(view.nbytes.to_bytes(8, "big"))
        h.update(view)
        return h.hexdigest()

    @staticmethod
    def _cost(data: bytes) -> int:
        return len(data) + ENTRY_OVERHEAD_BYTES

    def get(self, key: str) -> tuple[bytes, dict] | None:
        """The cached ``(data, meta)`` (meta is a copy the caller may change) or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0], copy.deepcopy(entry[1])

    def put(self, key: str, data: Any, meta: dict | None = None) -> bool:
        """Store a result; returns False if it alone is larger than the whole cache."""
        data = bytes(data)
        cost = self._cost(data)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= self._cost(old[0])
            if cost > self.max_bytes:
                return False
            self._entries[key] = (data, copy.deepcopy(meta or {}))
            self.bytes += cost
            while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, (evicted, _meta) = self._entries.popitem(last=False)
                self.bytes -= self._cost(evicted)
                self.evictions += 1
            return True

    def discard(self, key: str) -> bool:
        """Drop one entry (not counted as an eviction); True if it was there."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= self._cost(old[0])
            return old is not None

    def clear(self) -> None:
        """Drop every entry; the counters keep their values."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def stats(self) -> dict[str, int]:
        """Counters for the broker's INFO answer: hits, misses, evictions, bytes, entries, max_bytes."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                    "bytes": self.bytes, "entries": len(self._entries), "max_bytes": self.max_bytes,
                    "max_entries": self.max_entries}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
