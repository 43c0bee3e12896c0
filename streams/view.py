"""What readers and routes see of a run, wherever it runs.

A :class:`RunView` is the read side of a run: its identity, state, log and snapshot. The
local :class:`~streams.runs.Run` satisfies it, and so does a run of another instance read
from the shared store (:class:`~streams.cluster.backend.RemoteRun`): nothing that reads a run
needs to know which it has.
"""

from __future__ import annotations

from typing import Any, Protocol

from streams.log import EventLog
from streams.runs.run import RunStatus
from streams.spec import OnDisconnect, RunSpec

__all__ = ["ReaderCount", "RunView"]


class RunView(Protocol):
    """A run as readers, routes and the WebSocket session use it."""

    @property
    def id(self) -> str: ...

    @property
    def owner(self) -> str | None:
        """The API key's name that started it; None when the gateway is open."""

    @property
    def spec(self) -> RunSpec: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def status(self) -> RunStatus: ...

    @property
    def on_disconnect(self) -> OnDisconnect: ...

    @property
    def done(self) -> bool:
        """Whether the run has reached a terminal state."""

    def snapshot(self, *, producers: bool = True) -> dict[str, Any]:
        """The run's state as ``GET /v1/runs/{id}`` and ``stream.gap`` show it."""

    async def wait(self) -> None:
        """Wait until the run has reached a terminal state."""

    def resolve_client_tool(
        self, call_id: str, output: Any = None, error: str | None = None
    ) -> None:
        """Deliver the client's result for a ``client_tool.requested`` call (raises
        :class:`~streams.errors.InvalidRequestError` if the run is not waiting for it)."""


class ReaderCount(Protocol):
    """Counts a run's readers, so the last one leaving can cancel a run whose
    ``on_disconnect`` is ``cancel``. A run of another instance is not counted here."""

    def attach_reader(self, run: RunView) -> None:
        """A reader of ``run`` opened."""

    def detach_reader(self, run: RunView) -> None:
        """A reader of ``run`` left (the last one may cancel it)."""
