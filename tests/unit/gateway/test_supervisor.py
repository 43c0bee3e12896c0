"""The supervisor of ``gateway --workers N`` (``gateway/supervisor.py``) with stand-in workers
(``tests/worker_targets.py``: real spawned processes on a real socket, no gateway): a stop
drains every worker, a worker that does not drain is killed past the deadline, and one that
dies is started again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import pytest

from gateway.settings import Settings
from gateway.supervisor import Supervisor, WorkerMain, bind_socket
from tests import worker_targets
from tests.gateway_process import eventually

# The supervisor runs on the production loop (uvloop) only: each case spawns interpreters.
pytestmark = pytest.mark.production_loop

SETTINGS = Settings(workers=2, redis_url="redis://127.0.0.1:1/0")


async def greeting(port: int) -> str:
    """What a worker answers on a new connection."""
    async with asyncio.timeout(20):  # a spawned interpreter's start, on a busy machine
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return (await reader.read()).decode()
        finally:
            writer.close()


def reaped(pid: int) -> bool:
    """Whether ``pid`` is no child of ours any more (exited and waited for: no zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@contextlib.asynccontextmanager
async def supervising(
    target: WorkerMain,
) -> AsyncIterator[tuple[Supervisor, int, asyncio.Task[int]]]:
    with bind_socket("127.0.0.1", 0) as sock:
        supervisor = Supervisor(SETTINGS, sock, target=target)
        running = asyncio.create_task(supervisor.run())
        try:
            yield supervisor, sock.getsockname()[1], running
        finally:
            supervisor.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(supervisor.deadline + 5):
                    await running


async def test_a_stop_drains_every_worker_and_reaps_it() -> None:
    async with supervising(worker_targets.serves_until_sigterm) as (supervisor, port, running):
        seen: set[str] = set()

        async def both() -> bool:
            seen.add(await greeting(port))
            return seen == {"worker 1", "worker 2"}

        await eventually(both, timeout=30, interval=0, what="both workers answering")
        pids = supervisor.pids
        supervisor.stop()
        assert await running == 0
    assert supervisor.pids == {} and supervisor.killed == 0 and supervisor.restarts == 0
    assert len(pids) == 2
    assert all(pid is not None and reaped(pid) for pid in pids.values())


async def test_a_worker_that_does_not_drain_is_killed_past_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.supervisor")
    async with supervising(worker_targets.ignores_sigterm) as (supervisor, port, running):
        # Each worker answers once and is then past its SIGTERM handler's setup.
        assert {await greeting(port), await greeting(port)} == {"worker 1", "worker 2"}
        supervisor.deadline = 0.2
        supervisor.stop()
        assert await running == 1
    assert supervisor.killed == 2
    killed = [r.getMessage() for r in caplog.records if "did not drain" in r.getMessage()]
    assert sorted(message.split(" (pid")[0] for message in killed) == ["worker 1", "worker 2"]
    assert all(message.endswith("did not drain within 0s: killed (SIGKILL)") for message in killed)


async def test_a_worker_that_dies_is_started_again_after_a_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.supervisor")
    async with supervising(worker_targets.exits_at_once) as (supervisor, _, running):

        async def restarted() -> bool:
            return supervisor.restarts >= 2

        await eventually(restarted, timeout=30, what="both workers started again")
        supervisor.stop()
        assert await running == 0
    unexpected = [r.getMessage() for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert unexpected
    assert all(
        message.endswith("exited unexpectedly (exit code 3): starting it again in 0.5s")
        for message in unexpected[:2]
    )
