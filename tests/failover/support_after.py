"""Helpers of the after-output failover scenarios (beside the suite's shared
``tests.failover.support``): the openai SDK's view of a Chat Completions answer, and the
text a native client keeps once retractions are applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from tests.failover.support import GROUP
from tests.support import RunningGateway

__all__ = ["USER", "ChatOutcome", "chat", "sdk", "shown_text", "types"]

USER = [{"role": "user", "content": "what is the answer?"}]


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
