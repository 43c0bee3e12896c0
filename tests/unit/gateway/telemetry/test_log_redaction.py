"""Secrets never reach a log line: ``redact_text``, the ``redact`` processor and the logging
set up by ``configure_logging`` (``gateway/logs.py``)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from gateway.telemetry.logs import REDACTED, redact, redact_text, redact_text_by_patterns
from tests.support import captured_logs

# --- redact_text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET /v1/runs/r1/events?token=123.abcDEF_-x",
            "GET /v1/runs/r1/events?token=[redacted]",
        ),
        ("GET /x?key=s3cr3t", "GET /x?key=[redacted]"),
        ("GET /x?api_key=s3cr3t", "GET /x?api_key=[redacted]"),
        ("GET /x?TOKEN=s3cr3t", "GET /x?TOKEN=[redacted]"),
    ],
)
def test_a_secret_first_query_parameter_is_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("name", ["token", "key", "api_key"])
def test_a_secret_later_query_parameter_is_redacted_and_others_kept(name: str) -> None:
    text = f"GET /v1/runs/r1/events?after=5&{name}=s3cr3t&format=sse HTTP/1.1"
    assert redact_text(text) == (
        f"GET /v1/runs/r1/events?after=5&{name}=[redacted]&format=sse HTTP/1.1"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /x?%74oken=s3cr3t", "GET /x?%74oken=[redacted]"),
        ("GET /x?t%6Fk%65n=s3cr3t HTTP/1.1", "GET /x?t%6Fk%65n=[redacted] HTTP/1.1"),
        ("GET /x?%54%4F%4B%45%4E=s3cr3t", "GET /x?%54%4F%4B%45%4E=[redacted]"),
        ("GET /x?after=1&%6b%65%79=s3cr3t&a=2", "GET /x?after=1&%6b%65%79=[redacted]&a=2"),
        ("GET /x?api%5Fkey=s3cr3t", "GET /x?api%5Fkey=[redacted]"),
        ("GET /x?a=1?token=s3cr3t", "GET /x?a=1?token=[redacted]"),
    ],
)
def test_a_secret_parameter_is_redacted_by_its_decoded_name(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "GET /x?to%2Bken=1&%74oke=2&tokens%3D=3",  # decoded: "to+ken", "toke", "tokens="
        "GET /v1/runs?after=5&limit=10",
        "GET /v1/runs?monkey=banana&tokens=3&keyboard=1",
        "no secrets here, just words like token and key",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer gw-abc.def", "Authorization: Bearer [redacted]"),
        ("bearer gw-abc", "bearer [redacted]"),
        ("sent Bearer   gw-abc, then more", "sent Bearer   [redacted], then more"),
    ],
)
def test_a_bearer_credential_is_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x-api-key: gw-abc", "x-api-key: [redacted]"),
        ("X-API-Key:gw-abc", "X-API-Key:[redacted]"),
        ("headers X-Api-Key:   gw-abc end", "headers X-Api-Key:   [redacted] end"),
    ],
)
def test_an_api_key_header_is_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_several_secrets_in_one_text_are_all_redacted() -> None:
    text = "Bearer one x-api-key: two /x?token=three&key=four"
    redacted = redact_text(text)
    for secret in ("one", "two", "three", "four"):
        assert secret not in redacted
    assert redacted.count(REDACTED) == 4


# --- redact (the structlog processor) -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Authorization",
        "AUTHORIZATION",
        "x-api-key",
        "X-API-Key",
        "api_key",
        "key",
        "token",
        "Token",
        "secret",
    ],
)
def test_a_secret_field_is_redacted_whatever_its_case(name: str) -> None:
    event = redact(None, "info", {"event": "hello", name: "s3cr3t"})
    assert event[name] == REDACTED
    assert event["event"] == "hello"


@pytest.mark.parametrize("value", [12345, b"bytes", ["a", "list"], {"a": "dict"}, 1.5])
def test_a_secret_field_with_any_value_is_redacted(value: object) -> None:
    assert redact(None, "info", {"token": value})["token"] == REDACTED


def test_a_secret_field_that_is_none_stays_none() -> None:
    assert redact(None, "info", {"token": None})["token"] is None


def test_string_values_are_scanned_for_secrets() -> None:
    event = redact(
        None,
        "info",
        {"event": "request Bearer gw-abc", "path": "/x?token=t0k&after=1", "method": "GET"},
    )
    assert event == {
        "event": "request Bearer [redacted]",
        "path": "/x?token=[redacted]&after=1",
        "method": "GET",
    }


@pytest.mark.parametrize(
    "value", [42, 1.5, None, True, ["Bearer gw-abc"], {"note": "Bearer gw-abc"}, b"Bearer x"]
)
def test_non_string_values_of_other_fields_are_untouched(value: object) -> None:
    assert redact(None, "info", {"detail": value})["detail"] is value


def test_redact_returns_the_same_event_dict() -> None:
    event: dict[str, Any] = {"event": "x"}
    assert redact(None, "info", event) is event


# --- configure_logging, end to end ----------------------------------------------------------


@pytest.fixture
def configured_logging() -> Callable[[], contextlib.AbstractContextManager[io.StringIO]]:
    """A context manager configuring logging into a buffer, restoring everything on exit.

    Used inside the test body so the saved state is the one of the test's own call phase
    (pytest adds and removes its capture handlers per phase)."""
    return captured_logs


def _lines(output: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.getvalue().splitlines() if line.strip()]


def test_a_stdlib_logger_message_is_redacted(
    configured_logging: Callable[[], contextlib.AbstractContextManager[io.StringIO]],
) -> None:
    with configured_logging() as output:
        logging.getLogger("tests.redaction.stdlib").info(
            "GET %s with Authorization: Bearer %s",
            "/v1/runs/r1/events?token=url-secret&after=3",
            "bearer-secret",
        )
    text = output.getvalue()
    assert REDACTED in text
    assert "url-secret" not in text
    assert "bearer-secret" not in text
    [line] = _lines(output)
    assert line["event"] == (
        "GET /v1/runs/r1/events?token=[redacted]&after=3 with Authorization: Bearer [redacted]"
    )
    assert line["logger"] == "tests.redaction.stdlib"


def test_a_structlog_logger_event_and_fields_are_redacted(
    configured_logging: Callable[[], contextlib.AbstractContextManager[io.StringIO]],
) -> None:
    with configured_logging() as output:
        structlog.get_logger("tests.redaction.structlog").info(
            "calling upstream with Bearer bearer-secret",
            url="https://upstream.test/v1?token=url-secret",
            authorization="Bearer header-secret",
            status=200,
        )
    text = output.getvalue()
    for secret in ("bearer-secret", "url-secret", "header-secret"):
        assert secret not in text
    [line] = _lines(output)
    assert line["event"] == "calling upstream with Bearer [redacted]"
    assert line["url"] == "https://upstream.test/v1?token=[redacted]"
    assert line["authorization"] == REDACTED
    assert line["status"] == 200
    assert line["level"] == "info"


def test_configure_logging_honours_the_level(
    configured_logging: Callable[[], contextlib.AbstractContextManager[io.StringIO]],
) -> None:
    with configured_logging() as output:
        logging.getLogger("tests.redaction.level").debug("not shown")
        structlog.get_logger("tests.redaction.level").debug("not shown either")
    assert output.getvalue() == ""


def test_configure_logging_is_undone_after_the_test(
    configured_logging: Callable[[], contextlib.AbstractContextManager[io.StringIO]],
) -> None:
    root = logging.getLogger()
    before = root.handlers[:], root.level, structlog.get_config()
    with configured_logging():
        assert root.handlers != before[0]
    assert (root.handlers[:], root.level, structlog.get_config()) == before


@pytest.mark.parametrize("via", ["stdlib", "structlog"])
def test_a_secret_in_a_logged_exception_is_redacted(
    configured_logging: Callable[[], contextlib.AbstractContextManager[io.StringIO]], via: str
) -> None:
    with configured_logging() as output:
        try:
            raise RuntimeError("GET https://upstream.test/v1?token=exc-secret failed")
        except RuntimeError:
            if via == "stdlib":
                logging.getLogger("tests.redaction.exc").exception("upstream failed")
            else:
                structlog.get_logger("tests.redaction.exc").exception("upstream failed")
    text = output.getvalue()
    assert "RuntimeError" in text
    assert "exc-secret" not in text


@given(
    st.text(
        alphabet=st.sampled_from(list("?&=:;% \t,'\"xX-aApPiIkKeEyYtToOnNbBrR_0123456789")),
        max_size=40,
    )
)
def test_the_quick_checks_before_the_patterns_never_skip_a_secret(text: str) -> None:
    assert redact_text(text) == redact_text_by_patterns(text)
