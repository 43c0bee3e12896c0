"""Shielded, bounded, owned cleanup (``streams/cleanup.py``)."""

from __future__ import annotations

import asyncio

import pytest

from streams.cleanup import Cleanups, finish_shielded


class Gate:
    """A cleanup that ends when the test opens the gate, recording that it ran to its end."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.opened = asyncio.Event()
        self.finished = False

    async def cleanup(self) -> None:
        self.started.set()
        await self.opened.wait()
        self.finished = True


async def test_finish_shielded_runs_the_cleanup() -> None:
    gate = Gate()
    gate.opened.set()
    await finish_shielded(gate.cleanup(), timeout=5)
    assert gate.finished


async def test_finish_shielded_finishes_the_cleanup_under_the_callers_cancel() -> None:
    gate = Gate()
    caller = asyncio.create_task(finish_shielded(gate.cleanup(), timeout=5))
    await gate.started.wait()
    caller.cancel()
    gate.opened.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert gate.finished


async def test_finish_shielded_gives_up_after_its_timeout() -> None:
    gate = Gate()
    await finish_shielded(gate.cleanup(), timeout=0.01)
    assert gate.started.is_set() and not gate.finished


async def test_finish_shielded_does_not_raise_the_cleanups_failure() -> None:
    async def failing() -> None:
        raise ConnectionError("gone")

    await finish_shielded(failing(), timeout=5, expected=(ConnectionError,))
    await finish_shielded(failing(), timeout=5)  # logged, not raised


async def test_run_waits_for_the_cleanup() -> None:
    gate = Gate()
    gate.opened.set()
    await Cleanups(timeout=5).run(gate.cleanup())
    assert gate.finished


async def test_a_cancel_of_run_interrupts_only_the_wait() -> None:
    cleanups = Cleanups(timeout=5)
    gate = Gate()
    caller = asyncio.create_task(cleanups.run(gate.cleanup()))
    await gate.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cleanups.pending == 1 and not gate.finished
    gate.opened.set()
    await cleanups.aclose()
    assert gate.finished


async def test_aclose_awaits_every_cleanup_started() -> None:
    cleanups = Cleanups(timeout=5)
    gates = [Gate(), Gate()]
    for gate in gates:
        cleanups.start(gate.cleanup())
    closing = asyncio.create_task(cleanups.aclose())
    await asyncio.gather(*(gate.started.wait() for gate in gates))
    assert not closing.done()
    for gate in gates:
        gate.opened.set()
    await closing
    assert all(gate.finished for gate in gates) and cleanups.pending == 0


async def test_a_started_cleanup_is_bounded_by_the_timeout() -> None:
    cleanups = Cleanups(timeout=0.01)
    gate = Gate()
    task = cleanups.start(gate.cleanup())
    await cleanups.aclose()
    assert task.done() and not task.cancelled() and not gate.finished


async def test_a_failing_cleanup_does_not_raise_from_run() -> None:
    async def failing() -> None:
        raise ConnectionError("gone")

    cleanups = Cleanups(timeout=5)
    await cleanups.run(failing())
    assert cleanups.pending == 0
