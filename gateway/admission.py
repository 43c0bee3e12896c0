"""Every way of starting a run (HTTP, WebSocket, OpenAI face, AG-UI) goes through here: the
spec's size limits, the caller's run rate, then the run manager."""

from __future__ import annotations

from streams.connection import Connection
from streams.events import dumps
from streams.runs import Run
from streams.spec import OnDisconnect, ParallelToolCall, RunSpec

from .auth import Principal
from .errors import BodyTooLargeError
from .state import GatewayState


def check_spec_limits(spec: RunSpec, state: GatewayState) -> None:
    """Refuse a spec past the configured sizes, naming the limit (413)."""
    settings = state.settings
    messages = len(spec.messages) + sum(
        len(item.messages) for item in spec.parallel or () if not isinstance(item, ParallelToolCall)
    )
    if messages > settings.max_messages_per_run:
        raise BodyTooLargeError(
            f"the run has {messages} messages; the limit is {settings.max_messages_per_run}"
        )
    for item in spec.parallel or ():
        if isinstance(item, ParallelToolCall):
            check_arguments_size(len(dumps(item.arguments)), state)


def check_arguments_size(size: int, state: GatewayState) -> None:
    limit = state.settings.max_tool_arguments_bytes
    if size > limit:
        raise BodyTooLargeError(f"tool arguments of {size} bytes; the limit is {limit}")


def start_run(
    state: GatewayState,
    spec: RunSpec,
    connection: Connection,
    principal: Principal,
    *,
    default_on_disconnect: OnDisconnect,
) -> Run:
    check_spec_limits(spec, state)
    state.quotas.start_run(principal.owner)
    return state.manager.start(
        spec, connection, default_on_disconnect=default_on_disconnect, owner=principal.owner
    )
