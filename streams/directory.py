"""Where a gateway finds its runs: one interface, one implementation per deployment.

A :class:`RunDirectory` answers "which run is this, may this caller see it, cancel it"
whether the gateway is a single instance (:class:`LocalRunDirectory`, over the
:class:`~streams.runs.RunManager`, installed by default) or one of several sharing Redis
(:class:`~streams.cluster.backend.ClusterBackend`). Callers never ask which one they have.

The owner check is explicit: :meth:`RunDirectory.get` and :meth:`RunDirectory.cancel` take
the caller's owner (``None`` for a gateway without API keys), and a run of another owner is
not found, exactly like one that does not exist. :meth:`RunDirectory.get_unchecked` is the
one lookup without that check, for callers that prove access otherwise (a stream token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streams.approvals import ApprovalAnswer
from streams.runs.manager import RunManager
from streams.runs.run import Run
from streams.statistics import StoreMetric, StoreStatistics
from streams.view import ReaderCount, RunView

__all__ = ["LocalDirectoryStatistics", "LocalRunDirectory", "RunDirectory", "local_run"]


@dataclass(frozen=True, slots=True)
class LocalDirectoryStatistics:
    """A single instance's directory has nothing to report beyond the run manager's."""

    def to_dict(self) -> dict[str, Any]:
        return {}

    def metrics(self) -> Sequence[StoreMetric]:
        return ()


class RunDirectory(ReaderCount, Protocol):
    """The runs one gateway can answer for."""

    @property
    def available(self) -> bool:
        """Whether the directory can take runs now (the shared store answers)."""

    async def get(self, run_id: str, owner: str | None) -> RunView:
        """The run ``run_id`` of ``owner``; raises
        :class:`~streams.errors.NotFoundError` for another owner's run too."""

    async def get_unchecked(self, run_id: str) -> RunView:
        """The run ``run_id``, whoever owns it: only for callers that checked access
        another way."""

    async def cancel(self, run_id: str, reason: str, owner: str | None) -> RunView:
        """Cancel ``owner``'s run ``run_id`` wherever it runs; raises
        :class:`~streams.errors.RunFinishedError` if it has ended."""

    async def delete(self, run_id: str, owner: str | None) -> None:
        """Forget ``owner``'s ended run ``run_id`` wherever it ran (its log too); raises
        :class:`~streams.errors.RunBusyError` while it is queued or running."""

    async def answer_approval(self, run_id: str, call_id: str, answer: ApprovalAnswer) -> None:
        """Deliver a person's answer to run ``run_id``'s call ``call_id`` waiting for approval,
        wherever the run runs (the caller checked that they may answer): raises what
        :meth:`~streams.runs.run.Run.answer_approval` raises (answered already: 409; no such
        call waiting: 404; edited arguments that do not fit: 400, the call still waits)."""

    async def register(self, run: Run) -> None:
        """Make a run this instance just started known (before its client hears of it);
        raises (and stops the run) if that cannot be done."""

    def statistics(self) -> StoreStatistics:
        """What the directory reports about itself (read at scrape time: never waits)."""


class LocalRunDirectory:
    """The runs of a single instance: those its :class:`~streams.runs.RunManager` holds."""

    def __init__(self, manager: RunManager) -> None:
        self._manager = manager

    @property
    def available(self) -> bool:
        return True

    async def get(self, run_id: str, owner: str | None) -> Run:
        return self._manager.get(run_id, owner)

    async def get_unchecked(self, run_id: str) -> Run:
        return self._manager.get_unchecked(run_id)

    async def cancel(self, run_id: str, reason: str, owner: str | None) -> Run:
        return self._manager.cancel(run_id, reason, owner)

    async def delete(self, run_id: str, owner: str | None) -> None:
        self._manager.delete(run_id, owner)

    async def answer_approval(self, run_id: str, call_id: str, answer: ApprovalAnswer) -> None:
        self._manager.get_unchecked(run_id).answer_approval(call_id, answer)

    async def register(self, run: Run) -> None:
        """Nothing to do: the manager knows its runs from their start."""

    def attach_reader(self, run: RunView) -> None:
        self._manager.attach_reader(local_run(run))

    def detach_reader(self, run: RunView) -> None:
        self._manager.detach_reader(local_run(run))

    def statistics(self) -> LocalDirectoryStatistics:
        return LocalDirectoryStatistics()


def local_run(run: RunView) -> Run:
    """``run`` as the local :class:`~streams.runs.Run` it must be (a directory's own)."""
    if not isinstance(run, Run):
        raise TypeError(f"run {run.id} is not a run of this instance")
    return run
