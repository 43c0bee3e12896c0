"""Specification of the builtin tools and the tool registry (``streams/tools.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from streams.builtin.tools import builtin_tools
from streams.errors import InvalidRequestError, ToolError
from streams.events import EventType
from streams.log import MemoryEventLog
from streams.tools import Tool, ToolRegistry

BUILTIN_NAMES = ["clock", "calculator", "countdown", "sleep"]


class Emitted:
    """An ``emit`` callback that records the deltas a tool streams."""

    def __init__(self) -> None:
        self.deltas: list[str] = []

    async def __call__(self, delta: str) -> None:
        self.deltas.append(delta)


async def call(name: str, arguments: Mapping[str, Any]) -> tuple[Any, list[str]]:
    emitted = Emitted()
    tool = builtin_tools(countdown_interval=0).get(name)
    result = await tool.function(arguments, emitted)
    return result, emitted.deltas


async def failure(name: str, arguments: Mapping[str, Any]) -> str:
    with pytest.raises(ToolError) as error:
        await call(name, arguments)
    return str(error.value)


# -- registry -----------------------------------------------------------------------------


def test_builtin_registry_offers_the_four_tools() -> None:
    registry = builtin_tools()

    assert list(registry.tools) == BUILTIN_NAMES
    assert all(name in registry for name in BUILTIN_NAMES)
    assert [tool["name"] for tool in registry.describe()] == BUILTIN_NAMES


def test_tool_description_is_name_description_and_parameters() -> None:
    for description in builtin_tools().describe():
        assert set(description) == {"name", "description", "parameters"}
        assert description["description"]
        assert description["parameters"]["type"] == "object"


def test_unknown_tool_is_an_invalid_request() -> None:
    registry = builtin_tools()

    with pytest.raises(InvalidRequestError, match=r"^unknown tool 'teleport'$"):
        registry.get("teleport")
    assert "teleport" not in registry


def test_require_returns_the_tools_in_order_or_rejects_an_unknown_one() -> None:
    registry = builtin_tools()

    assert [tool.name for tool in registry.require(["sleep", "clock"])] == ["sleep", "clock"]
    with pytest.raises(InvalidRequestError, match="unknown tool 'nope'"):
        registry.require(["clock", "nope"])


def test_register_adds_or_replaces_a_tool_by_name() -> None:
    async def echo(arguments: Mapping[str, Any], emit: Any) -> Any:
        return dict(arguments)

    registry = ToolRegistry()
    first = Tool("echo", "Echo.", {"type": "object"}, echo)
    second = Tool("echo", "Echo again.", {"type": "object"}, echo, timeout=1.0)

    registry.register(first)
    registry.register(second)

    assert registry.get("echo") is second
    assert registry.describe() == [
        {"name": "echo", "description": "Echo again.", "parameters": {"type": "object"}}
    ]


def test_builtin_tools_use_the_default_timeout() -> None:
    assert all(tool.timeout is None for tool in builtin_tools().tools.values())


# -- clock --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "offset", "suffix"),
    [
        pytest.param({}, 0.0, "+00:00", id="default-utc"),
        pytest.param({"utc_offset_hours": 0}, 0.0, "+00:00", id="utc"),
        pytest.param({"utc_offset_hours": 5.5}, 5.5, "+05:30", id="half-hour"),
        pytest.param({"utc_offset_hours": -3}, -3.0, "-03:00", id="negative"),
        pytest.param({"utc_offset_hours": 14}, 14.0, "+14:00", id="max"),
        pytest.param({"utc_offset_hours": -14}, -14.0, "-14:00", id="min"),
    ],
)
async def test_clock_tells_the_current_time_at_the_offset(
    arguments: dict[str, Any], offset: float, suffix: str
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    result, deltas = await call("clock", arguments)

    after = dt.datetime.now(dt.UTC)
    assert result == {"iso": result["iso"], "utc_offset_hours": offset}
    assert result["iso"].endswith(suffix)
    assert before <= dt.datetime.fromisoformat(result["iso"]) <= after
    assert deltas == [result["iso"]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"utc_offset_hours": "5"}, "argument 'utc_offset_hours' must be a number"),
        ({"utc_offset_hours": True}, "argument 'utc_offset_hours' must be a number"),
        ({"utc_offset_hours": None}, "argument 'utc_offset_hours' must be a number"),
        ({"utc_offset_hours": 14.5}, "utc_offset_hours must be between -14 and 14"),
        ({"utc_offset_hours": -15}, "utc_offset_hours must be between -14 and 14"),
        ({"utc_offset_hours": float("nan")}, "argument 'utc_offset_hours' must be a finite number"),
        ({"utc_offset_hours": float("inf")}, "argument 'utc_offset_hours' must be a finite number"),
    ],
)
async def test_clock_rejects_bad_offsets(arguments: dict[str, Any], message: str) -> None:
    assert await failure("clock", arguments) == message


# -- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2 + 3 * 4", 14), ("7 / 2", 3.5), ("2 ** 64", 2**64), ("-(1.5)", -1.5)],
)
async def test_calculator_returns_and_emits_the_value(expression: str, value: float) -> None:
    result, deltas = await call("calculator", {"expression": expression})

    assert result == {"expression": expression, "value": value}
    assert deltas == [f"{expression} = {value}"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "argument 'expression' must be a string"),
        ({"expression": 42}, "argument 'expression' must be a string"),
        ({"expression": None}, "argument 'expression' must be a string"),
        ({"expression": "1 / 0"}, "division by zero"),
        ({"expression": ""}, "empty expression"),
        ({"expression": "2 ** 10001"}, "exponent larger than 10000"),
        ({"expression": "os.system('x')"}, "unexpected character 'o'"),
    ],
)
async def test_calculator_reports_bad_arguments_as_tool_errors(
    arguments: dict[str, Any], message: str
) -> None:
    assert await failure("calculator", arguments) == message


async def test_calculator_emits_nothing_when_it_fails() -> None:
    emitted = Emitted()

    with pytest.raises(ToolError):
        await builtin_tools().get("calculator").function({"expression": "1/0"}, emitted)

    assert emitted.deltas == []


async def test_calculator_result_beyond_64_bits_can_be_logged() -> None:
    result, _ = await call("calculator", {"expression": "2 ** 64"})
    log = MemoryEventLog("run_1")

    event = await log.append(
        EventType.TOOL_COMPLETED, "call_1", {"call_id": "call_1", "output": result}
    )

    assert event.seq == 1


# -- countdown ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "deltas"),
    [
        (1, ["1\n"]),
        (3, ["3\n", "2\n", "1\n"]),
        (3.0, ["3\n", "2\n", "1\n"]),
        (10, [f"{n}\n" for n in range(10, 0, -1)]),
    ],
)
async def test_countdown_emits_start_down_to_one_in_order(start: float, deltas: list[str]) -> None:
    result, emitted = await call("countdown", {"start": start, "interval": 0})

    assert emitted == deltas
    assert result == {"counted_from": int(start), "done": "liftoff"}
    assert type(result["counted_from"]) is int


async def test_countdown_uses_the_registry_interval_and_start_five_by_default() -> None:
    result, emitted = await call("countdown", {})

    assert emitted == ["5\n", "4\n", "3\n", "2\n", "1\n"]
    assert result == {"counted_from": 5, "done": "liftoff"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start": 0}, "start must be a whole number from 1 to 100000"),
        ({"start": -3}, "start must be a whole number from 1 to 100000"),
        ({"start": 100_001}, "start must be a whole number from 1 to 100000"),
        ({"start": 2.5}, "start must be a whole number from 1 to 100000"),
        ({"start": "3"}, "argument 'start' must be a number"),
        ({"start": True}, "argument 'start' must be a number"),
        ({"start": 3, "interval": -1}, "interval must be between 0 and 60 seconds"),
        ({"start": 3, "interval": 61}, "interval must be between 0 and 60 seconds"),
        ({"start": 3, "interval": float("nan")}, "argument 'interval' must be a finite number"),
        ({"start": 3, "interval": "fast"}, "argument 'interval' must be a number"),
    ],
)
async def test_countdown_rejects_bad_arguments(arguments: dict[str, Any], message: str) -> None:
    assert await failure("countdown", arguments) == message


@pytest.mark.parametrize("start", [float("nan"), float("inf"), float("-inf")])
async def test_countdown_rejects_non_finite_start_as_a_tool_error(start: float) -> None:
    assert await failure("countdown", {"start": start}) == (
        "argument 'start' must be a finite number"
    )


# -- sleep --------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "delta"), [(0, "sleeping 0s\n"), (0.0, "sleeping 0s\n")])
async def test_sleep_emits_then_returns_the_time_slept(seconds: float, delta: str) -> None:
    result, deltas = await call("sleep", {"seconds": seconds})

    assert deltas == [delta]
    assert result == {"slept": 0.0}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seconds": -1}, "seconds must be between 0 and 3600"),
        ({"seconds": 3600.5}, "seconds must be between 0 and 3600"),
        ({"seconds": float("nan")}, "argument 'seconds' must be a finite number"),
        ({"seconds": float("inf")}, "argument 'seconds' must be a finite number"),
        ({"seconds": "1"}, "argument 'seconds' must be a number"),
        ({"seconds": None}, "argument 'seconds' must be a number"),
        ({"seconds": [1]}, "argument 'seconds' must be a number"),
    ],
)
async def test_sleep_rejects_bad_arguments(arguments: dict[str, Any], message: str) -> None:
    assert await failure("sleep", arguments) == message


def test_tool_errors_are_gateway_errors_with_code_tool_error() -> None:
    assert ToolError("x").code == "tool_error"
    assert InvalidRequestError("x").code == "invalid_request"
