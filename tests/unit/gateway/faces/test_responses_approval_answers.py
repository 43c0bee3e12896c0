"""Specification of how the Responses face reads a request's ``mcp_approval_response`` items
(``gateway.faces.responses.approval_answers``): pure, each refusal a 400 naming the item."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.faces.responses import MAX_APPROVAL_ANSWERS, approval_answers
from streams.approvals import ApprovalAnswer
from streams.errors import InvalidRequestError


def item(request_id: Any = "mcpr_c1", approve: Any = True, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mcp_approval_response",
        "approval_request_id": request_id,
        "approve": approve,
        **extra,
    }


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ("What time is it?", None),
        ([], None),
        ([{"role": "user", "content": "hi"}], None),
        ([item()], [("c1", ApprovalAnswer("approve", by="alice"))]),
        (
            [item(approve=False, reason="not now"), item("mcpr_c2")],
            [
                ("c1", ApprovalAnswer("deny", by="alice", reason="not now")),
                ("c2", ApprovalAnswer("approve", by="alice")),
            ],
        ),
        ([item(id="mcpa_1", reason=None)], [("c1", ApprovalAnswer("approve", by="alice"))]),
    ],
)
def test_the_answers_of_a_request(items: Any, expected: Any) -> None:
    assert approval_answers(items, by="alice") == expected


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [item(), {"role": "user", "content": "and?"}],
            "input: a request that answers approvals holds only mcp_approval_response items",
        ),
        (
            [item(f"mcpr_c{n}") for n in range(MAX_APPROVAL_ANSWERS + 1)],
            f"input: at most {MAX_APPROVAL_ANSWERS} mcp_approval_response items",
        ),
        (
            [item("call_1")],
            "input[0].approval_request_id must be the id of an mcp_approval_request item",
        ),
        (
            [item("mcpr_")],
            "input[0].approval_request_id must be the id of an mcp_approval_request item",
        ),
        (
            [item(7)],
            "input[0].approval_request_id must be the id of an mcp_approval_request item",
        ),
        (
            [item("mcpr_" + "x" * 300)],
            "input[0].approval_request_id must be the id of an mcp_approval_request item",
        ),
        ([item(), item()], "input[1]: mcpr_c1 is answered twice"),
        ([item(approve="yes")], "input[0].approve must be true or false"),
        ([item(approve=None)], "input[0].approve must be true or false"),
        ([item(reason=3)], "input[0].reason must be a string"),
        ([item(reason="x" * 1001)], "reason is longer than 1000 characters"),
    ],
)
def test_a_malformed_answer_is_refused_naming_it(items: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        approval_answers(items, by="alice")

    assert str(raised.value) == message
