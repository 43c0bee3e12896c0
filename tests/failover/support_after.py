"""Helpers of the after-output failover scenarios: a gateway with a model group over
scripted upstreams, clients of each face reading it to the end, and the checks that no
upstream request outlived its run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from tests.sockets import HELD, TCP_STATES, eventually, server_side
from tests.support import SSE, RunningGateway, collect, running_gateway
from tests.upstream_server import RESET, STALL, Reply, UpstreamServer

GROUP = "smart"
USER = [{"role": "user", "content": "what is the answer?"}]


@contextlib.contextmanager
def group_gateway(
    routes: Mapping[str, dict[str, Any]], policy: str, **group: Any
) -> Iterator[RunningGateway]:
    """A gateway serving ``routes`` and the model group ``smart`` over them, in their order,
    with the after-output ``policy``."""
    groups = {GROUP: {"routes": list(routes), "policy": policy, **group}}
    with running_gateway(routes=dict(routes), groups=groups) as gateway:
        yield gateway


async def native_run(gateway: RunningGateway, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """``POST /v1/runs`` as an SSE stream, read to the run's end."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        async with client.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
            assert response.status_code == 200
            return await collect(response)


def sdk(gateway: RunningGateway) -> openai.AsyncOpenAI:
    """The official openai SDK pointed at the gateway (no retries of its own)."""
    return openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    )


@dataclass
class ChatOutcome:
    """What a Chat Completions client got: the text it was shown, the tool calls (streamed:
    each ``tool_calls`` delta; whole: the message's calls), the finish reason, and the
    error the SDK raised (``None``: a clean finish)."""

    text: str
    error: openai.APIError | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


async def chat(
    gateway: RunningGateway,
    *,
    stream: bool,
    tools: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> ChatOutcome:
    """One Chat Completions request for the group through the openai SDK, streamed or not,
    with client ``tools`` and ``extra`` body fields (``failover``)."""
    body = extra or None
    functions: Any = tools or openai.NOT_GIVEN
    async with sdk(gateway) as client:
        if not stream:
            try:
                completion = await client.chat.completions.create(
                    model=GROUP, messages=USER, tools=functions, extra_body=body
                )
            except openai.APIError as exc:
                return ChatOutcome("", exc)
            choice = completion.choices[0]
            calls = [call.model_dump() for call in choice.message.tool_calls or ()]
            return ChatOutcome(choice.message.content or "", None, calls, choice.finish_reason)
        outcome = ChatOutcome("", None)
        parts: list[str] = []
        chunks = await client.chat.completions.create(
            model=GROUP, messages=USER, tools=functions, stream=True, extra_body=body
        )
        try:
            async for chunk in chunks:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    parts.append(choice.delta.content)
                for call in choice.delta.tool_calls or ():
                    outcome.tool_calls.append(call.model_dump(exclude_none=True))
                outcome.finish_reason = choice.finish_reason or outcome.finish_reason
        except openai.APIError as exc:
            outcome.error = exc
        outcome.text = "".join(parts)
        return outcome


def of_type(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def types(events: Sequence[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def shown_text(events: Sequence[dict[str, Any]]) -> str:
    """The text a client keeps: the deltas after the last ``message.retracted``."""
    kept: list[str] = []
    for event in events:
        if event["type"] == "message.retracted":
            kept.clear()
        elif event["type"] == "message.delta":
            kept.append(event["delta"])
    return "".join(kept)


def client_side(port: int) -> dict[int, str]:
    """The gateway's sockets to ``port`` (a route's upstream) that hold resources: local
    port -> TCP state (``tests.sockets.server_side`` seen from the other end)."""
    held: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, state = fields[1], fields[2], TCP_STATES.get(fields[3], "?")
                if int(remote.rsplit(":", 1)[1], 16) == port and state in HELD:
                    held[int(local.rsplit(":", 1)[1], 16)] = state
    return held


def _streamed(reply: Reply) -> bool:
    """Whether the upstream sends ``reply`` as a stream it records the end of (not one
    whole body, sent in one write, nor one its script resets)."""
    if reply.before_headers is RESET or any(step is RESET for step in reply.steps):
        return False
    stalls = any(step is STALL for step in reply.steps)
    return stalls or reply.headers.get("content-type", "").startswith("text/event-stream")


async def assert_nothing_left_open(scripted: Mapping[UpstreamServer, Sequence[Reply]]) -> None:
    """Every streamed answer each upstream gave was sent to its end or left by the gateway,
    and the kernel holds no connection between the gateway and any of them (which covers
    the answers it does not record the end of: a whole body, a reset)."""
    for upstream, replies in scripted.items():
        for record, reply in zip(upstream.requests, replies, strict=False):
            if not _streamed(reply):
                continue
            await eventually(
                lambda record=record: (
                    record.finished_at is not None or record.disconnected.is_set()
                ),
                timeout=5,
            )
        port = upstream.port
        await eventually(
            lambda port=port: not server_side(port) and not client_side(port), timeout=5
        )
