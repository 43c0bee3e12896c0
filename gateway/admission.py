"""Every way of starting a run (HTTP, WebSocket, OpenAI face, AG-UI) goes through here: the
spec's size limits, the caller's run rate, then the run manager."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import BaseModel

from gateway.auth import Principal
from gateway.state import GatewayState, StreamSlot
from streams.connection import Connection
from streams.errors import BodyTooLargeError, InvalidRequestError
from streams.events import dumps
from streams.runs.run import Run
from streams.spec import OnDisconnect, ParallelModelCall, ParallelToolCall, RunSpec

__all__ = [
    "MAX_JSON_DEPTH",
    "check_arguments_size",
    "check_json_input",
    "check_spec_limits",
    "start_run",
]

# Deepest JSON nesting a run spec or a client tool result may have. Far beyond any real
# schema or tool output, and well within what the event encoder (orjson: 255 levels) writes:
# deeper input would be accepted here and then fail the run when its events are encoded.
MAX_JSON_DEPTH = 64


def _is_unicode(text: str) -> bool:
    if text.isascii():  # the usual case, known without encoding it
        return True
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone UTF-16 surrogate, e.g. from the JSON escape "\ud800"
        return False
    return True


def check_json_input(value: Any, what: str) -> None:
    """Refuse ``value`` (JSON values and pydantic models of them) nested deeper than
    ``MAX_JSON_DEPTH`` levels, or with a string that is not Unicode (a lone surrogate, which
    no event could encode): 400. Iterative, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _is_unicode(item):
                raise InvalidRequestError(f"{what} holds a string with a lone UTF-16 surrogate")
            continue
        if isinstance(item, BaseModel):
            children = [*item.__dict__.values(), *(item.__pydantic_extra__ or {}).values()]
        elif isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequestError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def check_spec_limits(spec: RunSpec, state: GatewayState) -> None:
    """Refuse a spec past the configured sizes, naming the limit (413), or nested too
    deeply (400)."""
    settings = state.settings
    if spec.parallel is not None and len(spec.parallel) > settings.max_parallel_items:
        raise BodyTooLargeError(
            f"the parallel run has {len(spec.parallel)} items; the limit is "
            f"{settings.max_parallel_items} (max_parallel_items)"
        )
    model_calls = [item for item in spec.parallel or () if isinstance(item, ParallelModelCall)]
    messages = len(spec.messages) + sum(len(item.messages) for item in model_calls)
    if messages > settings.max_messages_per_run:
        raise BodyTooLargeError(
            f"the run has {messages} messages; the limit is {settings.max_messages_per_run} "
            "(max_messages_per_run)"
        )
    # What one model step is offered: every tool described in each of its requests.
    for offered in [len(spec.tools) + len(spec.client_tools), *(len(c.tools) for c in model_calls)]:
        if offered > settings.max_tools_per_run:
            raise BodyTooLargeError(
                f"the run offers {offered} tools to a model; the limit is "
                f"{settings.max_tools_per_run} (max_tools_per_run)"
            )
    # No model step makes more calls than this: neither can a message the client says it did.
    for message in itertools.chain(spec.messages, *(c.messages for c in model_calls)):
        calls = len(message.tool_calls or ())
        if calls > settings.max_tool_calls_per_step:
            raise BodyTooLargeError(
                f"a message has {calls} tool calls; the limit is "
                f"{settings.max_tool_calls_per_step} (max_tool_calls_per_step)"
            )
    check_json_input(spec, "the run spec")  # before anything is encoded
    if spec.metadata:
        size = len(dumps(spec.metadata))
        if size > settings.max_metadata_bytes:
            raise BodyTooLargeError(
                f"the run's metadata has {size} bytes; the limit is "
                f"{settings.max_metadata_bytes} (max_metadata_bytes)"
            )
    for item in spec.parallel or ():
        if isinstance(item, ParallelToolCall):
            check_arguments_size(len(dumps(item.arguments)), state)


def check_arguments_size(size: int, state: GatewayState) -> None:
    limit = state.settings.max_tool_arguments_bytes
    if size > limit:
        raise BodyTooLargeError(
            f"tool arguments of {size} bytes; the limit is {limit} (max_tool_arguments_bytes)"
        )


async def start_run(
    state: GatewayState,
    spec: RunSpec,
    connection: Connection,
    principal: Principal,
    *,
    default_on_disconnect: OnDisconnect,
    stream: StreamSlot | None = None,
) -> Run:
    """Start a run of ``principal``'s, its quotas taken first: ``stream`` too, if given (the
    slot of the stream that will read it; left to the caller to give back if this raises)."""
    check_spec_limits(spec, state)
    # The owner's stream slot (if any), active-run slot and run-rate token at once, in this
    # order: a start refused for one spends nothing of the next.
    slot = state.run_slot(principal.owner)
    await state.take_run_start(slot, stream)
    try:
        run = state.manager.start(
            spec, connection, default_on_disconnect=default_on_disconnect, owner=principal.owner
        )
    except BaseException:
        slot.release()
        raise
    run.on_end(slot.release)  # completed, failed or cancelled (also if registering fails)
    # Known to the directory before the client hears of it: with Redis, any instance can
    # then answer for it.
    await state.runs.register(run)
    return run
