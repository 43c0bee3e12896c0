"""Which calls wait for a person, who may answer, and how edited arguments are checked."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from streams.approvals import ApprovalAnswer, ApprovalPolicy, ApprovalRequest, check_arguments
from streams.errors import InvalidRequestError

POLICY = ApprovalPolicy(
    tools={"sleep": "always", "clock": "never"},
    keys={"cautious": "all", "ops": ["calculator"]},
    approvers=frozenset({"boss"}),
)


@pytest.mark.parametrize(
    ("tool", "owner", "asked", "required"),
    [
        ("sleep", None, None, True),  # the config's "always"
        ("sleep", "ops", [], True),
        ("clock", None, None, False),  # "never": only when asked
        ("clock", None, "all", True),
        ("clock", None, ["clock"], True),
        ("clock", None, ["sleep"], False),
        ("clock", "cautious", None, True),  # the key's "all"
        ("calculator", "ops", None, True),  # the key's list
        ("clock", "ops", None, False),
        ("clock", "stranger", None, False),
        ("countdown", None, [], False),
    ],
)
def test_required(
    tool: str, owner: str | None, asked: Literal["all"] | list[str] | None, required: bool
) -> None:
    assert POLICY.required(tool, owner, asked) is required


@pytest.mark.parametrize(
    ("key", "owner", "may"),
    [
        (None, None, True),  # an open gateway: anyone
        ("alice", None, True),
        ("alice", "alice", True),  # the run's owner
        ("boss", "alice", True),  # an approver
        ("mallory", "alice", False),
        (None, "alice", False),
    ],
)
def test_may_answer(key: str | None, owner: str | None, may: bool) -> None:
    assert POLICY.may_answer(key, owner) is may


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "start": {"type": "integer", "minimum": 1, "maximum": 10},
        "rate": {"type": "number"},
        "name": {"type": "string", "minLength": 2, "maxLength": 4},
        "mode": {"enum": ["fast", "slow"]},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "maybe": {"type": ["string", "null"]},
        "inner": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
    "required": ["start"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "arguments must be object"),
        ({}, "arguments.start is required"),
        ({"start": 1, "extra": 1}, "arguments.extra is not a parameter of the tool"),
        ({"start": "1"}, "arguments.start must be integer"),
        ({"start": 1.5}, "arguments.start must be integer"),
        ({"start": True}, "arguments.start must be integer"),
        ({"start": 0}, "arguments.start must be at least 1"),
        ({"start": 11}, "arguments.start must be at most 10"),
        ({"start": 1, "rate": "x"}, "arguments.rate must be number"),
        ({"start": 1, "rate": float("inf")}, "arguments.rate must be a finite number"),
        ({"start": 1, "name": "a"}, "arguments.name must have at least 2 characters"),
        ({"start": 1, "name": "abcde"}, "arguments.name must have at most 4 characters"),
        ({"start": 1, "mode": "medium"}, "arguments.mode must be one of ['fast', 'slow']"),
        ({"start": 1, "flag": 1}, "arguments.flag must be boolean"),
        ({"start": 1, "tags": "a"}, "arguments.tags must be array"),
        ({"start": 1, "tags": ["a", 2]}, "arguments.tags[1] must be string"),
        ({"start": 1, "maybe": 3}, "arguments.maybe must be string or null"),
        ({"start": 1, "inner": {"n": "x"}}, "arguments.inner.n must be integer"),
    ],
)
def test_check_arguments_names_the_field_that_does_not_fit(value: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_arguments(value, SCHEMA)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "value",
    [
        {"start": 1},
        {"start": 10, "rate": 2, "name": "ab", "mode": "slow", "flag": False},
        {"start": 5, "tags": [], "maybe": None, "inner": {"n": 3}},
        {"start": 5, "maybe": "x", "inner": {"other": "anything"}},
    ],
)
def test_check_arguments_lets_what_fits_through(value: Any) -> None:
    check_arguments(value, SCHEMA)


@pytest.mark.parametrize(
    ("decision", "reason", "arguments", "message"),
    [
        ("maybe", None, None, "decision must be 'approve' or 'deny'"),
        ("deny", "x" * 1001, None, "reason is longer than 1000 characters"),
        ("deny", None, {"start": 1}, "only an approval may edit the call's arguments"),
    ],
)
def test_an_answer_that_cannot_be(
    decision: Any, reason: str | None, arguments: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ApprovalAnswer(decision, by="alice", reason=reason, arguments=arguments)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("answer", "payload"),
    [
        (ApprovalAnswer("deny", "timeout"), {"call_id": "c1", "by": "timeout", "reason": None}),
        (
            ApprovalAnswer("approve", "alice", "ok", {"start": 2}),
            {"call_id": "c1", "by": "alice", "reason": "ok", "arguments": {"start": 2}},
        ),
    ],
)
def test_the_answer_event(answer: ApprovalAnswer, payload: dict[str, Any]) -> None:
    assert answer.event("c1") == payload


def test_the_request_event_leaves_the_schema_out() -> None:
    request = ApprovalRequest("c1", "countdown", {"start": 3}, SCHEMA, 12.5)
    assert request.to_dict() == {
        "call_id": "c1",
        "name": "countdown",
        "arguments": {"start": 3},
        "expires_at": 12.5,
    }
