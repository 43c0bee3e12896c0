"""The Watchdog: a deadline per wait, one timer per stream of waits."""

from __future__ import annotations

import asyncio

import pytest

from streams.watchdog import Watchdog


def later(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_a_wait_that_finishes_in_time_returns_its_result() -> None:
    watchdog = Watchdog()
    try:
        assert await watchdog.wait(asyncio.sleep(0, "ok"), later(5)) == "ok"
    finally:
        watchdog.close()


async def test_a_wait_past_its_deadline_raises_timeout_error() -> None:
    watchdog = Watchdog()
    never = asyncio.Event()
    try:
        with pytest.raises(TimeoutError):
            await watchdog.wait(never.wait(), later(0.01))
    finally:
        watchdog.close()


async def test_the_task_is_not_left_cancelling_after_a_timeout() -> None:
    watchdog = Watchdog()
    never = asyncio.Event()
    try:
        with pytest.raises(TimeoutError):
            await watchdog.wait(never.wait(), later(0.01))
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        # and the next await is not hit by a stray cancel
        await asyncio.sleep(0)
        assert await watchdog.wait(asyncio.sleep(0, 1), later(5)) == 1
    finally:
        watchdog.close()


async def test_many_waits_share_one_timer() -> None:
    """Moving the deadline later does not arm a new timer: the first one re-arms itself."""
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: object, *args: object) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, callback, *args)  # type: ignore[arg-type]

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    try:
        watchdog = Watchdog()
        for _ in range(100):
            await watchdog.wait(asyncio.sleep(0), later(5))
        watchdog.close()
    finally:
        del loop.call_at
    assert len(armed) == 1


async def test_an_earlier_deadline_rearms_the_timer() -> None:
    watchdog = Watchdog()
    never = asyncio.Event()
    try:
        await watchdog.wait(asyncio.sleep(0), later(60))
        with pytest.raises(TimeoutError):
            await watchdog.wait(never.wait(), later(0.01))
    finally:
        watchdog.close()


async def test_a_deadline_that_passes_between_waits_does_not_cancel_the_task() -> None:
    """Time spent outside wait() is the consumer's: the watchdog never cancels it."""
    watchdog = Watchdog()
    try:
        await watchdog.wait(asyncio.sleep(0), later(0.01))
        await asyncio.sleep(0.05)  # the timer fires here, with no wait in progress
        assert await watchdog.wait(asyncio.sleep(0, "after"), later(5)) == "after"
    finally:
        watchdog.close()


async def test_a_timer_firing_early_rearms_for_the_moved_deadline() -> None:
    watchdog = Watchdog()
    try:
        await watchdog.wait(asyncio.sleep(0), later(0.02))
        # The timer set for 20 ms fires during this wait, whose deadline is later.
        assert await watchdog.wait(asyncio.sleep(0.06, "slow"), later(5)) == "slow"
    finally:
        watchdog.close()


async def test_a_cancel_from_outside_is_passed_on_not_turned_into_a_timeout() -> None:
    never = asyncio.Event()
    started = asyncio.Event()

    async def waiter() -> None:
        watchdog = Watchdog()
        try:
            started.set()
            await watchdog.wait(never.wait(), later(60))
        finally:
            watchdog.close()

    task = asyncio.create_task(waiter())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancel_from_outside_at_the_deadline_stays_a_cancel() -> None:
    """The deadline and an outside cancel in one loop iteration: the outside cancel wins,
    as with asyncio.timeout (the task was asked to stop; a TimeoutError would hide that)."""
    never = asyncio.Event()
    started = asyncio.Event()
    deadline = later(0.02)

    async def waiter() -> None:
        watchdog = Watchdog()
        try:
            started.set()
            await watchdog.wait(never.wait(), deadline)
        finally:
            watchdog.close()

    task = asyncio.create_task(waiter())
    await started.wait()
    # Armed after the watchdog's timer for the same moment: runs right after it.
    asyncio.get_running_loop().call_at(deadline, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_rebound_watchdog_times_out_the_task_that_waits_now() -> None:
    async def make() -> Watchdog:
        return Watchdog()

    # Made in one task (a model group's race), waited on in another (the step's).
    watchdog = await asyncio.create_task(make())
    never = asyncio.Event()

    async def wait_past_the_deadline() -> str:
        watchdog.rebind()
        try:
            await watchdog.wait(never.wait(), later(0.01))
        except TimeoutError:
            return "timed out"
        return "woken"

    try:
        waiter = asyncio.create_task(wait_past_the_deadline())
        done, _ = await asyncio.wait([waiter], timeout=5)  # unbound: it would never end
        assert waiter in done
        assert waiter.result() == "timed out"
    finally:
        watchdog.close()


def test_a_watchdog_needs_a_task() -> None:
    with pytest.raises(RuntimeError):
        Watchdog()


async def test_a_deadline_already_past_times_out_on_the_next_wait() -> None:
    """uvloop's call_at for a time already past returns a plain Handle (no ``when()``):
    the next wait, made before that handle runs, must not ask it for its time."""

    async def buffered() -> str:  # data already read: returns without suspending
        return "chunk"

    watchdog = Watchdog()
    never = asyncio.Event()
    past = later(-1)
    try:
        assert await watchdog.wait(buffered(), past) == "chunk"
        with pytest.raises(TimeoutError):
            await watchdog.wait(never.wait(), past)
    finally:
        watchdog.close()
