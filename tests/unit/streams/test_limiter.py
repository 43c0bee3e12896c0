"""Specification of the counted limiter (``streams/limiter.py``): a semaphore that counts
the acquisitions that had to wait, and says what it holds."""

from __future__ import annotations

import asyncio

import pytest

from streams.limiter import CountedLimiter, LimiterStatistics


async def waiting(limiter: CountedLimiter, count: int) -> None:
    """Yield to the loop until ``count`` acquisitions are parked on the limiter."""
    for _ in range(100):
        if limiter.statistics().tasks_waiting == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {count} waiting, got {limiter.statistics()}")


def test_a_new_limiter_holds_nothing() -> None:
    assert CountedLimiter(2).statistics() == LimiterStatistics(
        total_tokens=2, borrowed_tokens=0, tasks_waiting=0, waits=0, peak_borrowed=0
    )


def test_a_limiter_needs_a_token() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        CountedLimiter(0)


async def test_acquisitions_with_a_free_token_do_not_count_as_waits() -> None:
    limiter = CountedLimiter(2)
    await limiter.acquire()
    await limiter.acquire()
    assert limiter.statistics() == LimiterStatistics(2, 2, 0, 0, 2)
    assert limiter.locked()


async def test_an_acquisition_that_waits_is_counted_and_told_once() -> None:
    told: list[None] = []
    limiter = CountedLimiter(1, on_wait=lambda: told.append(None))
    await limiter.acquire()
    second = asyncio.create_task(limiter.acquire())
    await waiting(limiter, 1)
    assert limiter.statistics() == LimiterStatistics(1, 1, 1, 1, 1)
    assert told == [None]
    limiter.release()
    await second
    assert limiter.statistics() == LimiterStatistics(1, 1, 0, 1, 1)


async def test_a_cancelled_wait_stays_counted_and_stops_waiting() -> None:
    limiter = CountedLimiter(1)
    await limiter.acquire()
    second = asyncio.create_task(limiter.acquire())
    await waiting(limiter, 1)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert limiter.statistics() == LimiterStatistics(1, 1, 0, 1, 1)


async def test_the_peak_is_the_most_held_at_once() -> None:
    limiter = CountedLimiter(3)
    async with limiter:
        async with limiter:
            pass
        async with limiter:
            pass
    assert limiter.statistics() == LimiterStatistics(3, 0, 0, 0, 2)


async def test_leaving_the_context_on_an_error_gives_the_token_back() -> None:
    limiter = CountedLimiter(1)
    with pytest.raises(RuntimeError):
        async with limiter:
            raise RuntimeError
    assert limiter.statistics().borrowed_tokens == 0
    assert not limiter.locked()
