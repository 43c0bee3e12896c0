"""Specification of ``error_message`` (``streams/upstream/client.py``): the message an
upstream put in a JSON error body, as the gateway repeats it to its client."""

from __future__ import annotations

import pytest

from streams.upstream.client import error_message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}',
            "invalid_request_error: Incorrect API key",
            id="openai",
        ),
        pytest.param(
            b'{"error": {"message": "quota", "type": null, "code": "insufficient_quota"}}',
            "insufficient_quota: quota",
            id="openai-code-without-type",
        ),
        pytest.param(b'{"error": {"message": "no kind"}}', "no kind", id="message-only"),
        pytest.param(
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "overloaded_error: Overloaded",
            id="anthropic",
        ),
        pytest.param(b'{"error": "model not loaded"}', "model not loaded", id="error-string"),
        pytest.param(b'{"message": "bad gateway"}', "bad gateway", id="message-field"),
        pytest.param(b'{"detail": "Not Found"}', "Not Found", id="detail-field"),
        pytest.param(
            '{"error": {"message": "mod\u00e8le inconnu"}}'.encode(),
            "mod\u00e8le inconnu",
            id="utf-8",
        ),
    ],
)
def test_the_message_of_a_json_error_is_found(body: bytes, message: str) -> None:
    assert error_message(body) == message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>oops</html>", id="html"),
        pytest.param(b'{"error": {"message": "cut', id="cut-short"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"choices": []}', id="no-error"),
        pytest.param(b'{"error": {"message": ""}}', id="empty-message"),
        pytest.param(b'{"error": {"message": 5}}', id="message-not-a-string"),
        pytest.param(b"\xff\xfe{}", id="not-utf-8"),
    ],
)
def test_a_body_that_says_no_error_message_has_none(body: bytes) -> None:
    assert error_message(body) is None
