"""The WebSocket origin check (``gateway/ws.py::origin_allowed``): browsers send ``Origin``;
same-origin pages and the configured origins may open a socket, other pages may not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from gateway.faces.ws import origin_allowed


@dataclass
class FakeWebSocket:
    """All ``origin_allowed`` reads of a WebSocket: its (lower-case) headers."""

    headers: dict[str, str] = field(default_factory=dict)


def allowed(headers: dict[str, str], origins: list[str]) -> bool:
    return origin_allowed(cast(Any, FakeWebSocket(headers)), origins)


@pytest.mark.parametrize("origins", [[], ["https://app.example.com"], ["*"]])
def test_a_client_without_origin_is_allowed(origins: list[str]) -> None:
    assert allowed({"host": "gw.example.com"}, origins)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("https://gw.example.com", "gw.example.com"),
        ("http://localhost:5173", "localhost:5173"),
        ("http://[::1]:8000", "[::1]:8000"),
    ],
)
def test_a_same_origin_page_is_allowed(origin: str, host: str) -> None:
    assert allowed({"origin": origin, "host": host}, [])


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://evil.example", "gw.example.com"),
        ("http://127.0.0.1:9999", "127.0.0.1:8000"),
        ("http://127.0.0.1", "127.0.0.1:8000"),
        ("https://gw.example.com.evil.example", "gw.example.com"),
        ("null", "gw.example.com"),
        ("gw.example.com", "gw.example.com"),
    ],
)
def test_a_page_of_another_origin_is_refused(origin: str, host: str) -> None:
    assert not allowed({"origin": origin, "host": host}, [])


def test_an_origin_is_refused_when_there_is_no_host() -> None:
    assert not allowed({"origin": "https://evil.example"}, [])


@pytest.mark.parametrize(
    "origins",
    [["https://app.example.com"], ["https://other.example", "https://app.example.com"]],
)
def test_a_listed_origin_is_allowed(origins: list[str]) -> None:
    assert allowed({"origin": "https://app.example.com", "host": "gw.example.com"}, origins)


def test_an_unlisted_origin_is_refused_when_others_are_listed() -> None:
    headers = {"origin": "https://evil.example", "host": "gw.example.com"}
    assert not allowed(headers, ["https://app.example.com"])


@pytest.mark.parametrize("origin", ["https://anything.example", "null", "http://10.0.0.1:1"])
def test_a_wildcard_allows_every_origin(origin: str) -> None:
    assert allowed({"origin": origin, "host": "gw.example.com"}, ["*"])
