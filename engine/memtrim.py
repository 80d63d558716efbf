"""Give freed memory back to the operating system (glibc's ``malloc_trim``), if we can.

glibc raises its mmap threshold after the first large buffer is freed, so later
image-sized buffers (a result, a received frame) come from the heap, and the pages of
freed ones stay in the process's RSS: a broker whose live memory is bounded at 32 MiB
was seen at 390 MiB RSS after relaying 400 results. ``malloc_trim(0)`` returns those
free pages (madvise); the broker calls it once per heartbeat, off the per-task path.
Elsewhere (musl, macOS) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):
    _trim = None


def trim() -> bool:
    """Return free heap pages to the OS; True if anything was released."""
    return bool(_trim(0)) if _trim is not None else False
