"""Specification of the WebSocket command parser (``gateway/ws_protocol.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.faces.ws_protocol import (
    COMMAND_TYPES,
    CancelRun,
    CommandError,
    Ping,
    StartRun,
    Subscribe,
    ToolApprove,
    ToolDeny,
    ToolResult,
    Unsubscribe,
    parse_command,
)

COMMAND_CLASSES = (
    StartRun,
    CancelRun,
    Subscribe,
    Unsubscribe,
    ToolResult,
    ToolApprove,
    ToolDeny,
    Ping,
)
AGENT_RUN = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def parse(message: Any) -> Any:
    return parse_command(json.dumps(message))


# -- valid commands -----------------------------------------------------------------------


def test_run_start_parses_its_run_spec() -> None:
    command = parse({"type": "run.start", "id": 1, "run": {**AGENT_RUN, "tools": ["clock"]}})

    assert isinstance(command, StartRun)
    assert command.id == 1
    assert command.run.model == "demo"
    assert command.run.tools == ["clock"]
    assert command.run.messages[0].content == "hi"


def test_run_cancel_parses_run_id_and_reason() -> None:
    command = parse({"type": "run.cancel", "id": "c", "run_id": "run_1", "reason": "enough"})

    assert command == CancelRun(type="run.cancel", id="c", run_id="run_1", reason="enough")


def test_run_cancel_reason_defaults() -> None:
    command = parse({"type": "run.cancel", "run_id": "run_1"})

    assert isinstance(command, CancelRun)
    assert command.reason == "cancelled by client"


@pytest.mark.parametrize(("given_after", "after"), [(None, 0), (0, 0), (42, 42)])
def test_subscribe_parses_run_id_and_after(given_after: int | None, after: int) -> None:
    message: dict[str, Any] = {"type": "subscribe", "id": 3, "run_id": "run_1"}
    if given_after is not None:
        message["after"] = given_after

    assert parse(message) == Subscribe(type="subscribe", id=3, run_id="run_1", after=after)


def test_unsubscribe_parses_run_id() -> None:
    command = parse({"type": "unsubscribe", "id": 4, "run_id": "run_1"})

    assert command == Unsubscribe(type="unsubscribe", id=4, run_id="run_1")


@pytest.mark.parametrize(
    "output", [None, 42, "text", [1, "two"], {"nested": {"list": [True, None, 1.5]}}]
)
def test_tool_result_parses_any_json_output(output: Any) -> None:
    command = parse(
        {"type": "tool.result", "id": 5, "run_id": "run_1", "call_id": "call_1", "output": output}
    )

    assert command == ToolResult(
        type="tool.result", id=5, run_id="run_1", call_id="call_1", output=output, error=None
    )


@pytest.mark.parametrize(
    ("message", "command"),
    [
        (
            {"type": "tool.approve", "id": 8, "run_id": "run_1", "call_id": "call_1"},
            ToolApprove(type="tool.approve", id=8, run_id="run_1", call_id="call_1"),
        ),
        (
            {
                "type": "tool.approve",
                "run_id": "run_1",
                "call_id": "call_1",
                "reason": "ok",
                "arguments": {"start": 2},
            },
            ToolApprove(
                type="tool.approve",
                run_id="run_1",
                call_id="call_1",
                reason="ok",
                arguments={"start": 2},
            ),
        ),
        (
            {"type": "tool.deny", "id": "d", "run_id": "run_1", "call_id": "c", "reason": "no"},
            ToolDeny(type="tool.deny", id="d", run_id="run_1", call_id="c", reason="no"),
        ),
    ],
)
def test_approval_answers_parse(message: dict[str, Any], command: ToolApprove | ToolDeny) -> None:
    assert parse(message) == command


def test_tool_result_parses_an_error() -> None:
    command = parse(
        {"type": "tool.result", "run_id": "run_1", "call_id": "call_1", "error": "no GPS"}
    )

    assert isinstance(command, ToolResult)
    assert (command.output, command.error) == (None, "no GPS")


@pytest.mark.parametrize(
    ("message", "command_id"),
    [
        ({"type": "ping", "id": 6}, 6),
        ({"type": "ping", "id": "p-6"}, "p-6"),
        ({"type": "ping", "id": None}, None),
        ({"type": "ping"}, None),
    ],
)
def test_ping_keeps_the_client_id(message: dict[str, Any], command_id: str | int | None) -> None:
    assert parse(message) == Ping(type="ping", id=command_id)


def test_bytes_input_is_parsed_like_text() -> None:
    message = {"type": "subscribe", "id": "é", "run_id": "run_✓"}

    command = parse_command(json.dumps(message, ensure_ascii=False).encode())

    assert command == Subscribe(type="subscribe", id="é", run_id="run_✓", after=0)


def test_bool_id_is_not_turned_into_an_int() -> None:
    command = parse_command('{"type": "ping", "id": true}')

    assert not (isinstance(command, Ping) and command.id == 1)


# -- invalid messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("{", id="truncated"),
        pytest.param("ping", id="bare-word"),
        pytest.param("{'type': 'ping'}", id="single-quotes"),
        pytest.param('{"type": "ping",}', id="trailing-comma"),
        pytest.param('{"type": "ping"} {"type": "ping"}', id="two-documents"),
        pytest.param('{"type": "ping", "id": NaN}', id="nan"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param(b"\xff\xfe", id="invalid-utf8-bytes"),
        pytest.param("[" * 2000, id="too-deep"),
    ],
)
def test_invalid_json_is_reported_without_id(text: str | bytes) -> None:
    error = parse_command(text)

    assert isinstance(error, CommandError)
    assert (error.id, error.code) == (None, "invalid_json")
    assert error.message.startswith("the message is not valid JSON: ")


@pytest.mark.parametrize("text", ["[]", '[{"type": "ping"}]', "1", '"ping"', "null", "true"])
def test_non_object_is_an_invalid_command(text: str) -> None:
    assert parse_command(text) == CommandError(
        None, "invalid_command", "a command must be a JSON object"
    )


@pytest.mark.parametrize(
    ("message", "shown_type"),
    [
        pytest.param({"type": "pong", "id": 1}, "'pong'", id="unknown-name"),
        pytest.param({"id": 1}, "None", id="missing"),
        pytest.param({"type": None, "id": 1}, "None", id="null"),
        pytest.param({"type": 7, "id": 1}, "7", id="number"),
        pytest.param({"type": ["ping"], "id": 1}, "['ping']", id="list"),
        pytest.param({"type": {"ping": 1}, "id": 1}, "{'ping': 1}", id="object"),
        pytest.param({"type": "PING", "id": 1}, "'PING'", id="case-sensitive"),
    ],
)
def test_unknown_type_is_an_unknown_command(message: dict[str, Any], shown_type: str) -> None:
    assert parse(message) == CommandError(
        1,
        "unknown_command",
        f"unknown command type {shown_type}; expected one of "
        "auth, run.start, run.cancel, subscribe, unsubscribe, tool.result, tool.approve, "
        "tool.deny, ping",
    )


@pytest.mark.parametrize(
    ("message", "field"),
    [
        pytest.param({"type": "run.start"}, "run", id="start-without-run"),
        pytest.param({"type": "run.start", "run": {}}, "run", id="start-empty-spec"),
        pytest.param({"type": "run.start", "run": "demo"}, "run", id="start-run-not-object"),
        pytest.param(
            {"type": "run.start", "run": {**AGENT_RUN, "max_steps": 0}},
            "run.max_steps",
            id="start-bad-spec-field",
        ),
        pytest.param({"type": "run.cancel"}, "run_id", id="cancel-without-run-id"),
        pytest.param(
            {"type": "run.cancel", "run_id": "r", "reason": "x" * 201},
            "reason",
            id="cancel-reason-too-long",
        ),
        pytest.param({"type": "subscribe"}, "run_id", id="subscribe-without-run-id"),
        pytest.param({"type": "subscribe", "run_id": 5}, "run_id", id="run-id-not-str"),
        pytest.param(
            {"type": "subscribe", "run_id": "r", "after": -1}, "after", id="negative-after"
        ),
        pytest.param(
            {"type": "subscribe", "run_id": "r", "after": "x"}, "after", id="after-not-int"
        ),
        pytest.param({"type": "unsubscribe"}, "run_id", id="unsubscribe-without-run-id"),
        pytest.param(
            {"type": "tool.result", "run_id": "r"}, "call_id", id="tool-result-without-call-id"
        ),
        pytest.param(
            {"type": "tool.result", "run_id": "r", "call_id": "c", "error": 5},
            "error",
            id="tool-result-error-not-str",
        ),
        pytest.param({"type": "ping", "extra": 1}, "extra", id="extra-field"),
        pytest.param(
            {"type": "tool.approve", "run_id": "r"}, "call_id", id="approve-without-call-id"
        ),
        pytest.param({"type": "tool.deny", "call_id": "c"}, "run_id", id="deny-without-run-id"),
        pytest.param(
            {"type": "tool.approve", "run_id": "r", "call_id": "c", "reason": "x" * 1001},
            "reason",
            id="approve-reason-too-long",
        ),
        pytest.param(
            {"type": "tool.approve", "run_id": "r", "call_id": "c", "arguments": [1]},
            "arguments",
            id="approve-arguments-not-object",
        ),
        pytest.param(
            {"type": "tool.deny", "run_id": "r", "call_id": "c", "arguments": {}},
            "arguments",
            id="deny-with-arguments",
        ),
    ],
)
def test_wrong_or_missing_fields_are_an_invalid_command(
    message: dict[str, Any], field: str
) -> None:
    error = parse({**message, "id": "cmd-9"})

    assert isinstance(error, CommandError)
    assert (error.id, error.code) == ("cmd-9", "invalid_command")
    assert error.message.startswith(f"invalid {message['type']}: {field}")


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"type": "nope"}, id="unknown_command"),
        pytest.param({"type": "subscribe"}, id="invalid_command"),
    ],
)
@pytest.mark.parametrize(
    ("given_id", "echoed"),
    [
        pytest.param("abc", "abc", id="str"),
        pytest.param("", "", id="empty-str"),
        pytest.param(7, 7, id="int"),
        pytest.param(0, 0, id="zero"),
        pytest.param(-3, -3, id="negative-int"),
        pytest.param(True, None, id="bool"),
        pytest.param(1.5, None, id="float"),
        pytest.param(None, None, id="null"),
        pytest.param([1], None, id="list"),
        pytest.param({"a": 1}, None, id="object"),
    ],
)
def test_error_echoes_the_client_id_only_when_str_or_int(
    message: dict[str, Any], given_id: Any, echoed: str | int | None
) -> None:
    error = parse({**message, "id": given_id})

    assert isinstance(error, CommandError)
    assert error.id == echoed
    assert type(error.id) is type(echoed)


def test_only_the_first_five_problems_are_listed() -> None:
    fields = {f"extra_{n}": n for n in range(8)}

    error = parse({"type": "ping", **fields})

    assert isinstance(error, CommandError)
    assert error.message.count("Extra inputs are not permitted") == 5


# -- fuzz ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

command_like = st.fixed_dictionaries(
    {"type": st.sampled_from([*COMMAND_TYPES, "nope"]) | json_values},
    optional={
        key: json_values
        for key in ("id", "run", "run_id", "reason", "after", "call_id", "output", "error")
    },
)


def assert_command_or_error(result: object) -> None:
    assert isinstance(result, (*COMMAND_CLASSES, CommandError))
    if isinstance(result, CommandError):
        assert result.code in ("invalid_json", "invalid_command", "unknown_command")
        assert isinstance(result.message, str)
        assert result.message


def echoable(command_id: object) -> bool:
    """A str, or an int that JSON parsing keeps as an int (orjson reads bigger ones as floats)."""
    if isinstance(command_id, str):
        return True
    return type(command_id) is int and -(2**63) <= command_id < 2**64


@given(st.text() | st.binary())
@settings(max_examples=300, deadline=None)
def test_any_text_or_bytes_gives_a_command_or_an_error(text: str | bytes) -> None:
    assert_command_or_error(parse_command(text))


@given(json_values | command_like)
@settings(max_examples=300, deadline=None)
def test_any_json_value_gives_a_command_or_an_error(value: object) -> None:
    result = parse(value)

    assert_command_or_error(result)
    if isinstance(result, CommandError) and isinstance(value, dict):
        command_id = value.get("id")
        assert result.id == (command_id if echoable(command_id) else None)
