"""The gateway's built-in tools: a clock, a calculator, a countdown that streams, a sleep."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from streams.builtin.calculator import CalculatorError, evaluate
from streams.errors import ToolError
from streams.tools import Emit, Tool, ToolFunction, ToolRegistry

__all__ = ["builtin_tools", "calculator", "clock", "make_countdown", "sleep"]


def _number(arguments: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = arguments.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"argument {key!r} must be a number")
    if not math.isfinite(value):
        raise ToolError(f"argument {key!r} must be a finite number")
    return float(value)


async def clock(arguments: Mapping[str, Any], emit: Emit) -> Any:
    """The current time in UTC, or at a fixed offset (``utc_offset_hours``)."""
    offset = _number(arguments, "utc_offset_hours", 0)
    if not -14 <= offset <= 14:
        raise ToolError("utc_offset_hours must be between -14 and 14")
    zone = dt.timezone(dt.timedelta(hours=offset))
    now = dt.datetime.now(zone)
    iso = now.isoformat(timespec="seconds")
    await emit(iso)
    return {"iso": iso, "utc_offset_hours": offset}


async def calculator(arguments: Mapping[str, Any], emit: Emit) -> Any:
    """Evaluate an arithmetic expression (``+ - * / // % **`` and parentheses)."""
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError("argument 'expression' must be a string")
    try:
        value = evaluate(expression)
    except CalculatorError as exc:
        raise ToolError(str(exc)) from None
    await emit(f"{expression} = {value}")
    return {"expression": expression, "value": value}


def make_countdown(default_interval: float) -> ToolFunction:
    async def countdown(arguments: Mapping[str, Any], emit: Emit) -> Any:
        """Count down from ``start`` to 1, one ``tool.delta`` per tick."""
        start = _number(arguments, "start", 5)
        if start != int(start) or not 1 <= start <= 100_000:
            raise ToolError("start must be a whole number from 1 to 100000")
        interval = _number(arguments, "interval", default_interval)
        if not 0 <= interval <= 60:
            raise ToolError("interval must be between 0 and 60 seconds")
        for n in range(int(start), 0, -1):
            await emit(f"{n}\n")
            if n > 1:
                await asyncio.sleep(interval)
        return {"counted_from": int(start), "done": "liftoff"}

    return countdown


async def sleep(arguments: Mapping[str, Any], emit: Emit) -> Any:
    """Wait ``seconds`` (for trying out cancellation and timeouts)."""
    seconds = _number(arguments, "seconds", 1)
    if not 0 <= seconds <= 3600:
        raise ToolError("seconds must be between 0 and 3600")
    await emit(f"sleeping {seconds:g}s\n")
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def builtin_tools(*, countdown_interval: float = 0.5) -> ToolRegistry:
    """The tools every gateway has, no keys needed."""
    registry = ToolRegistry()
    registry.register(
        Tool(
            "clock",
            "The current date and time (UTC, or at a fixed offset from UTC).",
            {
                "type": "object",
                "properties": {
                    "utc_offset_hours": {"type": "number", "minimum": -14, "maximum": 14}
                },
            },
            clock,
        )
    )
    registry.register(
        Tool(
            "calculator",
            "Evaluate an arithmetic expression exactly: + - * / // % ** and parentheses.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
            calculator,
        )
    )
    registry.register(
        Tool(
            "countdown",
            "Count down from `start` to 1, streaming one tick per `interval` seconds.",
            {
                "type": "object",
                "properties": {
                    "start": {"type": "integer", "minimum": 1, "maximum": 100000},
                    "interval": {"type": "number", "minimum": 0, "maximum": 60},
                },
                "required": ["start"],
            },
            make_countdown(countdown_interval),
        )
    )
    registry.register(
        Tool(
            "sleep",
            "Wait for `seconds` and return. Useful to try cancellation.",
            {
                "type": "object",
                "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
                "required": ["seconds"],
            },
            sleep,
        )
    )
    return registry
