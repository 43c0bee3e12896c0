"""The messages that carry an approval answer to the run's instance and its outcome back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.approvals import ApprovalAnswer
from streams.cluster.approvals import (
    MAX_OUTCOME_MESSAGE_LENGTH,
    approval_command,
    encode_outcome,
    is_reply_token,
    parse_answer,
    raise_for_outcome,
)
from streams.errors import (
    ApprovalAnsweredError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    StoreUnavailableError,
)

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            ApprovalAnswer("approve", by="alice"),
            b'{"op":"approve","run_id":"run_1","call_id":"call_1","answer":{"decision":"approve",'
            b'"by":"alice","reason":null,"arguments":null},"reply":"' + TOKEN.encode() + b'"}',
        ),
        (
            ApprovalAnswer("approve", by="anonymous", reason="ok", arguments={"n": 2}),
            b'{"op":"approve","run_id":"run_1","call_id":"call_1","answer":{"decision":"approve",'
            b'"by":"anonymous","reason":"ok","arguments":{"n":2}},"reply":"'
            + TOKEN.encode()
            + b'"}',
        ),
        (
            ApprovalAnswer("deny", by="bob", reason="d\u00e9j\u00e0 vu"),
            b'{"op":"approve","run_id":"run_1","call_id":"call_1","answer":{"decision":"deny",'
            b'"by":"bob","reason":"d\xc3\xa9j\xc3\xa0 vu","arguments":null},"reply":"'
            + TOKEN.encode()
            + b'"}',
        ),
    ],
)
def test_the_command_carries_the_answer_exactly(answer: ApprovalAnswer, expected: bytes) -> None:
    assert approval_command("run_1", "call_1", answer, TOKEN) == expected


@pytest.mark.parametrize(
    "answer",
    [
        ApprovalAnswer("approve", by="alice"),
        ApprovalAnswer("approve", by="anonymous", reason="ok", arguments={"n": [1, {"x": None}]}),
        ApprovalAnswer("deny", by="bob", reason="no"),
    ],
)
def test_the_owner_reads_back_the_answer_the_asker_sent(answer: ApprovalAnswer) -> None:
    command = orjson.loads(approval_command("run_1", "call_1", answer, TOKEN))
    assert parse_answer(command["answer"]) == answer


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "the answer must be an object"),
        ([], "the answer must be an object"),
        ({"decision": "maybe", "by": "a"}, "decision must be 'approve' or 'deny'"),
        ({"decision": "approve"}, "the answer's by and reason must be strings"),
        (
            {"decision": "deny", "by": "a", "reason": 3},
            "the answer's by and reason must be strings",
        ),
        (
            {"decision": "approve", "by": "a", "arguments": [1]},
            "the answer's arguments must be an object",
        ),
        (
            {"decision": "deny", "by": "a", "arguments": {}},
            "only an approval may edit the call's arguments",
        ),
        (
            {"decision": "deny", "by": "a", "reason": "x" * 1001},
            "reason is longer than 1000 characters",
        ),
    ],
)
def test_a_malformed_answer_is_an_invalid_request(value: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_answer(value)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, b'{"ok":true}'),
        (
            ApprovalAnsweredError("answered already"),
            b'{"ok":false,"code":"approval_answered","message":"answered already"}',
        ),
        (NotFoundError("no call"), b'{"ok":false,"code":"not_found","message":"no call"}'),
        (
            InvalidRequestError("arguments.n must be at most 14"),
            b'{"ok":false,"code":"invalid_request","message":"arguments.n must be at most 14"}',
        ),
        (
            GatewayError("x" * (MAX_OUTCOME_MESSAGE_LENGTH + 5)),
            b'{"ok":false,"code":"gateway_error","message":"'
            + b"x" * MAX_OUTCOME_MESSAGE_LENGTH
            + b'"}',
        ),
    ],
)
def test_the_outcome_is_ok_or_the_error_s_code_and_bounded_message(
    error: GatewayError | None, expected: bytes
) -> None:
    assert encode_outcome(error) == expected


def test_an_ok_outcome_raises_nothing() -> None:
    raise_for_outcome(b'{"ok":true}')


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ApprovalAnsweredError("answered already"), ApprovalAnsweredError),
        (NotFoundError("no call"), NotFoundError),
        (InvalidRequestError("arguments.n must be at most 14"), InvalidRequestError),
        (StoreUnavailableError("gone"), StoreUnavailableError),
        (GatewayError("odd"), GatewayError),
    ],
)
def test_the_asker_raises_the_owner_s_error_again(
    error: GatewayError, kind: type[GatewayError]
) -> None:
    with pytest.raises(GatewayError) as raised:
        raise_for_outcome(encode_outcome(error))
    assert type(raised.value) is kind
    assert str(raised.value) == str(error)


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        (b'{"ok":false,"code":"run_busy","message":"m"}', GatewayError, "m"),
        (b'{"ok":false}', GatewayError, "the run's instance refused the answer"),
        (b"not json", GatewayError, "the run's instance sent an outcome that cannot be read"),
        (b"[1]", GatewayError, "the run's instance sent an outcome that cannot be read"),
        (b"{}", GatewayError, "the run's instance sent an outcome that cannot be read"),
    ],
)
def test_an_outcome_of_another_kind_or_unreadable_is_a_gateway_error(
    raw: bytes, kind: type[GatewayError], message: str
) -> None:
    with pytest.raises(GatewayError) as raised:
        raise_for_outcome(raw)
    assert type(raised.value) is kind
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (TOKEN, True),
        ("0" * 16, True),
        ("0" * 64, True),
        ("0" * 15, False),
        ("0" * 65, False),
        ("0123456789ABCDEF", False),
        ("../../gw:run:x", False),
        ("0123456789abcdef\n", False),
        (None, False),
        (12345678901234567890, False),
    ],
)
def test_a_reply_token_is_hex_of_a_bounded_length(value: Any, valid: bool) -> None:
    assert is_reply_token(value) is valid
