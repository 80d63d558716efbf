"""``engine.aiowait.within``: a time limit that never swallows a cancel (asyncio.wait_for does on 3.11)."""
import asyncio

import pytest

from engine.aiowait import within


def _cancel_as_the_event_fires(wait) -> bool:
    """Whether a task looping on ``wait(event.wait(), 5)`` ends when cancelled in the turn its event is set."""
    async def main() -> bool:
        event = asyncio.Event()
        turns = 0

        async def loop() -> None:
            nonlocal turns
            while turns < 3:
                try:
                    await wait(event.wait(), 5)
                except asyncio.TimeoutError:
                    pass
                turns += 1
                event.clear()
                await asyncio.sleep(0)

        task = asyncio.ensure_future(loop())
        await asyncio.sleep(0.01)
        event.set()
        task.cancel()
        await asyncio.wait((task,), timeout=1)
        return task.cancelled()

    return asyncio.run(main())


def test_a_cancel_in_the_turn_the_awaited_event_fires_is_raised():
    assert _cancel_as_the_event_fires(within)


def test_the_reference_shows_the_fault_within_guards_against():
    """On Python < 3.12, asyncio.wait_for loses that cancel: the loop goes on (the client's hang)."""
    import sys
    if sys.version_info >= (3, 12):
        pytest.skip("asyncio.wait_for keeps the cancel from Python 3.12 on")
    assert not _cancel_as_the_event_fires(asyncio.wait_for)


def test_value_and_timeout():
    async def main():
        assert await within(asyncio.sleep(0, "x"), 1) == "x"
        slow = asyncio.ensure_future(asyncio.sleep(5))
        with pytest.raises(asyncio.TimeoutError):
            await within(slow, 0.05)
        await asyncio.sleep(0)
        return slow.cancelled()

    assert asyncio.run(main())
