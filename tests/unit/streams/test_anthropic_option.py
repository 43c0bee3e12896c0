"""Specification of the ``"anthropic"`` option's check (``streams/spec.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streams.spec import MAX_BETAS, RunSpec

ASK = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "option",
    [
        pytest.param({}, id="empty"),
        pytest.param(
            {
                "body": {"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5},
                "beta": ["interleaved-thinking-2025-05-14"],
                "tools": {"clock": {"cache_control": {"type": "ephemeral"}}},
            },
            id="all-three",
        ),
    ],
)
def test_a_well_formed_option_is_accepted(option: dict[str, Any]) -> None:
    assert RunSpec(**ASK, options={"anthropic": option}).options["anthropic"] == option


@pytest.mark.parametrize(
    ("option", "match"),
    [
        pytest.param([], "must be an object", id="not-an-object"),
        pytest.param({"headers": {}}, "unknown 'anthropic' fields", id="unknown-field"),
        pytest.param({"body": []}, "'anthropic.body' must be an object", id="body"),
        pytest.param({"beta": "b"}, "'anthropic.beta'", id="beta-not-a-list"),
        pytest.param({"beta": ["a\r\nx: y"]}, "'anthropic.beta'", id="beta-header-injection"),
        pytest.param({"beta": ["b"] * (MAX_BETAS + 1)}, "'anthropic.beta'", id="too-many-betas"),
        pytest.param({"tools": {"clock": 1}}, "'anthropic.tools'", id="tools"),
    ],
)
def test_a_malformed_option_is_refused(option: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        RunSpec(**ASK, options={"anthropic": option})
