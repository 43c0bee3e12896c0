"""The ``demo`` model: a scripted stand-in for an LLM, so the gateway works with no keys.

It is not a language model. It reads the last user message and

* when that message asks for something a tool on offer can do, streams a short preamble and
  then calls the tools, several at once if the message asks for several:
  the time or date -> ``clock``; "count down from N" -> ``countdown``; an arithmetic
  expression -> ``calculator``; "sleep N seconds" -> ``sleep``; the name of a client-side
  tool -> that tool (arguments ``{}``);
* once the tool results are in, streams an answer that quotes them;
* otherwise streams a reply saying what it is and what to ask.

Text is streamed word by word, ``token_delay`` seconds apart; tool arguments are streamed
in fragments, as real models do. Each turn ends with its finish reason (``tool_calls`` when
it called tools, else ``stop``), then its usage.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from streams.models import (
    Finish,
    Model,
    ModelOutput,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)

__all__ = ["DemoModel", "plan_tool_calls"]

_TIME = re.compile(r"\b(time|clock|date|day)\b", re.IGNORECASE)
_COUNTDOWN = re.compile(r"count\s*(?:-\s*)?down(?:\s+from\s+(\d+))?", re.IGNORECASE)
_EXPRESSION = re.compile(r"[-(]*\d[\d.\s]*(?:(?:\*\*|//|[-+*/%])[\s(]*-?\d[\d.\s)]*)+")
_SLEEP = re.compile(r"\b(?:sleep|wait)\s+(?:for\s+)?(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_WORDS = re.compile(r"\s*\S+")


def _content_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def plan_tool_calls(prompt: str, available: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Which tools the demo model calls for ``prompt``, in the order the prompt names them."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    if "clock" in available and (m := _TIME.search(prompt)):
        found.append((m.start(), "clock", {}))
    if "countdown" in available and (m := _COUNTDOWN.search(prompt)):
        found.append((m.start(), "countdown", {"start": int(m.group(1) or 5)}))
    if "calculator" in available and (m := _EXPRESSION.search(prompt)):
        found.append((m.start(), "calculator", {"expression": m.group(0).strip()}))
    if "sleep" in available and (m := _SLEEP.search(prompt)):
        found.append((m.start(), "sleep", {"seconds": float(m.group(1))}))
    builtin = {"clock", "countdown", "calculator", "sleep"}
    for name in available:
        if name in builtin:
            continue
        m = re.search(rf"\b{re.escape(name)}\b", prompt, re.IGNORECASE)
        if m:
            found.append((m.start(), name, {}))
    found.sort(key=lambda item: item[0])
    return [(name, args) for _, name, args in found]


def _describe_result(name: str, content: str) -> str:
    try:
        value = json.loads(content)
    except ValueError:
        return f"{name} said {content}"
    if isinstance(value, dict):
        if "error" in value:
            return f"{name} failed ({value['error']})"
        if name == "clock" and "iso" in value:
            return f"the time is {value['iso']}"
        if name == "countdown" and "counted_from" in value:
            return f"the countdown from {value['counted_from']} reached {value.get('done')}"
        if name == "calculator" and "value" in value:
            return f"{value.get('expression')} = {value['value']}"
    return f"{name} returned {json.dumps(value, ensure_ascii=False)}"


class DemoModel(Model):
    """Scripted model; see the module docstring."""

    description = "Scripted demo model (not an LLM): calls tools when the prompt asks for them."

    def __init__(self, name: str = "demo", token_delay: float = 0.03) -> None:
        self.name = name
        self.token_delay = token_delay

    async def _pace(self) -> None:
        # Always yield to the loop, even with no delay, so a step never monopolises it.
        await asyncio.sleep(self.token_delay)

    async def _words(self, text: str) -> AsyncGenerator[ModelOutput, None]:
        for word in _WORDS.findall(text):
            await self._pace()
            yield TextDelta(word)

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        prompt = _content_text(messages[last_user]) if last_user >= 0 else ""
        since = messages[last_user + 1 :]
        names_by_id: dict[str, str] = {}
        for message in since:
            for call in message.get("tool_calls") or ():
                names_by_id[call.get("id", "")] = call.get("function", {}).get("name", "tool")
        results = [m for m in since if m.get("role") == "tool"]
        output_words = 0
        called = False

        if results:
            parts = [
                _describe_result(
                    names_by_id.get(m.get("tool_call_id", ""), "tool"), _content_text(m)
                )
                for m in results
            ]
            text = "Here is what I found: " + "; ".join(parts) + "."
            async for item in self._words(text):
                output_words += 1
                yield item
        else:
            available = [str(t.get("name")) for t in tools]
            calls = plan_tool_calls(prompt, available)
            if calls:
                names = " and ".join(dict.fromkeys(name for name, _ in calls))
                async for item in self._words(f"Let me use {names} for that."):
                    output_words += 1
                    yield item
                called = True
                for index, (name, arguments) in enumerate(calls):
                    await self._pace()
                    yield ToolCallStart(index=index, name=name)
                    encoded = json.dumps(arguments)
                    step = max(1, len(encoded) // 3)
                    for start in range(0, len(encoded), step):
                        await self._pace()
                        yield ToolCallDelta(index=index, arguments=encoded[start : start + step])
            else:
                text = (
                    "I am the demo model, a script rather than an LLM. "
                    f"You wrote {len(prompt.split())} words. Ask me the time, a sum such as "
                    "2 + 3 * 4, or to count down from 5, with the matching tools enabled, "
                    "and I will call them."
                )
                async for item in self._words(text):
                    output_words += 1
                    yield item
        prompt_words = sum(len(_content_text(m).split()) for m in messages)
        # In the order real upstreams give them: the finish reason, then the usage.
        yield Finish("tool_calls" if called else "stop")
        yield Usage(input_tokens=prompt_words, output_tokens=output_words)
