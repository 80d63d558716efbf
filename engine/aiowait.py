"""Waiting with a time limit in asyncio, without losing a cancel.

``asyncio.wait_for`` on Python < 3.12 returns the awaited value instead of raising
``CancelledError`` when the cancel arrives in the same loop turn as that value (CPython
gh-86296). A loop that waits that way in a task ignores the cancel and goes round again,
so whoever awaits the cancelled task waits for ever. ``within`` never swallows it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout_s: float) -> T:
    """``awaitable``'s value, or ``asyncio.TimeoutError`` after ``timeout_s`` (it is then cancelled).
    A cancel of the caller is always raised, and cancels ``awaitable`` too."""
    inner = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((inner,), timeout=timeout_s)
    finally:
        if not inner.done():
            inner.cancel()
    if not done:
        raise asyncio.TimeoutError
    return inner.result()
