"""The single instance's run directory (``streams/directory.py``) over a real RunManager."""

from __future__ import annotations

import pytest

from streams.connection import Connection
from streams.directory import LocalRunDirectory, RunDirectory, local_run
from streams.errors import NotFoundError, RunFinishedError
from streams.runs.manager import RunManager
from streams.runs.run import Run, RunStatus
from streams.spec import OnDisconnect
from streams.view import RunView
from tests.support import run_spec


def start(manager: RunManager, owner: str | None, on_disconnect: OnDisconnect = "continue") -> Run:
    spec = run_spec("sleep 30 seconds", ["sleep"])
    return manager.start(spec, Connection("c"), default_on_disconnect=on_disconnect, owner=owner)


def test_the_local_directory_is_a_run_directory(manager: RunManager) -> None:
    directory: RunDirectory = LocalRunDirectory(manager)
    assert directory.available


async def test_get_finds_the_owners_run(manager: RunManager) -> None:
    run = start(manager, "alice")
    assert await LocalRunDirectory(manager).get(run.id, "alice") is run


@pytest.mark.parametrize("caller", ["bob", None])
async def test_get_does_not_find_another_owners_run(
    manager: RunManager, caller: str | None
) -> None:
    run = start(manager, "alice")
    with pytest.raises(NotFoundError):
        await LocalRunDirectory(manager).get(run.id, caller)


async def test_an_ownerless_run_is_found_only_by_no_owner(manager: RunManager) -> None:
    run = start(manager, None)
    directory = LocalRunDirectory(manager)
    assert await directory.get(run.id, None) is run
    with pytest.raises(NotFoundError):
        await directory.get(run.id, "alice")


async def test_get_unchecked_finds_any_owners_run(manager: RunManager) -> None:
    run = start(manager, "alice")
    assert await LocalRunDirectory(manager).get_unchecked(run.id) is run


async def test_an_unknown_run_is_not_found(manager: RunManager) -> None:
    with pytest.raises(NotFoundError):
        await LocalRunDirectory(manager).get_unchecked("run_0000000000000000")


async def test_cancel_cancels_the_owners_run(manager: RunManager) -> None:
    run = start(manager, "alice")
    cancelled = await LocalRunDirectory(manager).cancel(run.id, "by test", "alice")
    assert cancelled is run
    await run.wait()
    assert (run.status, run.cancel_reason) == (RunStatus.CANCELLED, "by test")


async def test_cancel_of_another_owners_run_is_not_found_and_cancels_nothing(
    manager: RunManager,
) -> None:
    run = start(manager, "alice")
    with pytest.raises(NotFoundError):
        await LocalRunDirectory(manager).cancel(run.id, "by test", "bob")
    assert run.cancel_reason is None


async def test_cancel_of_an_ended_run_raises_run_finished(manager: RunManager) -> None:
    run = start(manager, "alice")
    directory = LocalRunDirectory(manager)
    await directory.cancel(run.id, "by test", "alice")
    await run.wait()
    with pytest.raises(RunFinishedError):
        await directory.cancel(run.id, "again", "alice")


async def test_register_leaves_the_run_running(manager: RunManager) -> None:
    run = start(manager, None)
    await LocalRunDirectory(manager).register(run)
    assert not run.done and run.cancel_reason is None


async def test_readers_are_counted_on_the_run(manager: RunManager) -> None:
    run = start(manager, None)
    directory = LocalRunDirectory(manager)
    directory.attach_reader(run)
    directory.attach_reader(run)
    assert run.readers == 2
    directory.detach_reader(run)
    assert run.readers == 1


async def test_the_last_reader_leaving_cancels_a_cancel_on_disconnect_run(
    manager: RunManager,
) -> None:
    run = start(manager, None, on_disconnect="cancel")
    directory = LocalRunDirectory(manager)
    directory.attach_reader(run)
    directory.detach_reader(run)
    await run.wait()
    assert (run.status, run.cancel_reason) == (RunStatus.CANCELLED, "last reader disconnected")


async def test_the_last_reader_leaving_keeps_a_continue_run(manager: RunManager) -> None:
    run = start(manager, None, on_disconnect="continue")
    directory = LocalRunDirectory(manager)
    directory.attach_reader(run)
    directory.detach_reader(run)
    assert run.cancel_reason is None  # a cancel sets it at once


def test_its_statistics_render_as_nothing(manager: RunManager) -> None:
    assert LocalRunDirectory(manager).statistics().to_dict() == {}


class ForeignView:
    id = "run_0123456789abcdef"


def test_a_view_that_is_not_a_local_run_is_refused() -> None:
    with pytest.raises(TypeError, match="not a run of this instance"):
        local_run(ForeignView())  # type: ignore[arg-type]


def test_a_local_run_is_a_run_view(manager: RunManager) -> None:
    view: RunView = start(manager, None)
    assert local_run(view) is view
