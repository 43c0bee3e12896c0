"""The DeadlineWheel: one timer for every connection's deadline."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.transport.connections import DeadlineWheel


class Recorder:
    def __init__(self) -> None:
        self.passed = asyncio.Event()
        self.at: float | None = None

    def deadline_passed(self) -> None:
        self.at = asyncio.get_running_loop().time()
        self.passed.set()


def add(wheel: DeadlineWheel, recorder: Recorder, delay: float) -> int:
    return wheel.add(cast(Any, recorder), delay)


async def test_a_deadline_passes_no_sooner_than_its_delay() -> None:
    wheel = DeadlineWheel(resolution=0.05)
    recorder = Recorder()
    start = asyncio.get_running_loop().time()
    add(wheel, recorder, 0.2)
    await asyncio.wait_for(recorder.passed.wait(), 5)
    assert recorder.at is not None
    assert recorder.at - start >= 0.2
    assert len(wheel) == 0


async def test_a_discarded_deadline_never_passes_and_the_wheel_stops_ticking() -> None:
    wheel = DeadlineWheel(resolution=0.02)
    kept, dropped = Recorder(), Recorder()
    add(wheel, kept, 0.1)
    wheel.discard(cast(Any, dropped), add(wheel, dropped, 0.05))
    await asyncio.wait_for(kept.passed.wait(), 5)
    assert not dropped.passed.is_set()
    assert len(wheel) == 0
    assert wheel._timer is None  # nothing pending: no timer either


async def test_deadlines_pass_in_the_order_of_their_buckets() -> None:
    wheel = DeadlineWheel(resolution=0.02)
    order: list[str] = []
    done = asyncio.Event()

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def deadline_passed(self) -> None:
            order.append(self.name)
            if len(order) == 3:
                done.set()

    for name, delay in (("late", 0.15), ("early", 0.03), ("middle", 0.09)):
        wheel.add(cast(Any, Named(name)), delay)
    await asyncio.wait_for(done.wait(), 5)
    assert order == ["early", "middle", "late"]
