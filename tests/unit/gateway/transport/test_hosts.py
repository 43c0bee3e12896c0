"""The Host check (``gateway/hosts.py``): which ``Host`` header values name this gateway.

DNS rebinding makes a page of a foreign *name* same-origin with the gateway, so the check
is about names: loopback's name, IP literals (which no DNS answer can rebind) and the
configured ``allowed_hosts``. Parsing is byte-exact on the raw header value.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.transport.hosts import AllowedHosts, HostName, allowed_host_pattern, parse_host

# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "is_ip"),
    [
        (b"localhost", "localhost", False),
        (b"localhost:8000", "localhost", False),
        (b"LocalHost:8000", "localhost", False),
        (b"localhost.:8000", "localhost", False),  # the root's dot: the same name
        (b"localhost:", "localhost", False),  # an empty port is allowed by RFC 3986
        (b" localhost:8000\t", "localhost", False),
        (b"127.0.0.1", "127.0.0.1", True),
        (b"127.0.0.1:65535", "127.0.0.1", True),
        (b"10.1.2.3:8000", "10.1.2.3", True),
        (b"[::1]", "[::1]", True),
        (b"[::1]:8000", "[::1]", True),
        (b"[::1]:", "[::1]", True),
        (b"[0:0:0:0:0:0:0:1]:8000", "[0:0:0:0:0:0:0:1]", True),
        (b"[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.1]", True),
        (b"gw.example.com", "gw.example.com", False),
        (b"GW.Example.COM:443", "gw.example.com", False),
        (b"my_host-1.internal:80", "my_host-1.internal", False),
        (b"127.1:8000", "127.1", False),  # not a dotted quad: a name (browsers never send it)
        (b"0x7f.0.0.1", "0x7f.0.0.1", False),
    ],
)
def test_a_host_header_parses_to_its_lower_case_name_without_port(
    raw: bytes, name: str, is_ip: bool
) -> None:
    assert parse_host(raw) == HostName(name, is_ip)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b" ",
        b":8000",
        b".",
        b"localhost:80a",
        b"localhost:-1",
        b"localhost:8000:8000",
        b"local host",
        b"localhost/",
        b"localhost?x",
        b"user@localhost",
        b"localhost%00",
        b"local\x00host",
        b"localhost\r\n",
        b"l\xc3\xb6calhost",  # UTF-8: not an (ASCII) host name
        b"\xff",
        b"[::1",
        b"::1",
        b"[::1]8000",
        b"[not-an-ip]:8000",
        b"[127.0.0.1]",
        b"[::1]:80:80",
        b"*",
        b"*.localhost",
    ],
)
def test_a_malformed_host_header_parses_to_nothing(raw: bytes) -> None:
    assert parse_host(raw) is None


# -- what is allowed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"localhost",
        b"localhost:8000",
        b"LOCALHOST:8000",
        b"localhost.:8000",
        b"127.0.0.1:8000",
        b"127.0.0.2",
        b"[::1]:8000",
        b"10.1.2.3:8000",  # a container's probe, by the pod's IP
        b"[2001:db8::1]:443",
    ],
)
def test_loopback_names_and_ip_literals_are_always_allowed(raw: bytes) -> None:
    assert AllowedHosts([]).allows([raw])


@pytest.mark.parametrize(
    "raw",
    [
        b"rebound.example",
        b"rebound.example:8000",
        b"localhost.rebound.example:8000",
        b"app.localhost:8000",  # *.localhost only when configured
        b"127.0.0.1.rebound.example",
        b"127.1:8000",
        b"localhost:80a",
        b"",
    ],
)
def test_any_other_name_is_refused_without_configured_hosts(raw: bytes) -> None:
    assert not AllowedHosts([]).allows([raw])


def test_a_request_without_host_is_allowed() -> None:
    """HTTP/1.0 may omit Host; a browser never does, and the check is about browsers."""
    assert AllowedHosts([]).allows([])


def test_a_request_with_two_host_headers_is_refused() -> None:
    assert not AllowedHosts([]).allows([b"localhost", b"localhost"])
    assert not AllowedHosts(["rebound.example"]).allows([b"localhost", b"rebound.example"])


@pytest.mark.parametrize(
    ("patterns", "raw", "allowed"),
    [
        (["gw.example.com"], b"gw.example.com", True),
        (["gw.example.com"], b"GW.example.com:443", True),
        (["gw.example.com"], b"gw.example.com.:443", True),
        (["gw.example.com"], b"api.gw.example.com", False),
        (["gw.example.com"], b"example.com", False),
        (["gw.example.com"], b"gw.example.com.rebound.example", False),
        (["gw.example.com"], b"xgw.example.com", False),
        (["gw.example.com"], b"localhost:8000", True),  # loopback stays allowed
        (["*.example.com"], b"gw.example.com", True),
        (["*.example.com"], b"a.b.example.com:8000", True),
        (["*.example.com"], b"example.com", False),  # the wildcard is for subdomains only
        (["*.example.com"], b"rebound-example.com", False),
        (["*.example.com"], b"example.com.rebound.example", False),
        (["*.localhost"], b"app.localhost:5173", True),
        (["*"], b"rebound.example:8000", True),
        (["*"], b"anything.at.all", True),
        (["*"], b"local host", True),  # any means any: nothing is checked
        (["127.0.0.1", "[::1]"], b"rebound.example", False),
        (["a.example", "*.b.example"], b"x.b.example", True),
        (["a.example", "*.b.example"], b"x.a.example", False),
    ],
)
def test_configured_hosts_extend_what_is_allowed(
    patterns: list[str], raw: bytes, allowed: bool
) -> None:
    assert AllowedHosts(patterns).allows([raw]) is allowed


def test_an_allowed_value_is_allowed_again_and_a_refused_one_refused_again() -> None:
    hosts = AllowedHosts(["gw.example.com"])
    for _ in range(3):
        assert hosts.allows([b"gw.example.com:8000"])
        assert not hosts.allows([b"rebound.example:8000"])


def test_past_the_remembered_values_every_value_is_still_checked() -> None:
    hosts = AllowedHosts([])
    assert all(hosts.allows([f"10.0.0.{n}".encode()]) for n in range(200))
    assert not hosts.allows([b"rebound.example"])
    assert hosts.allows([b"10.0.0.199"])


NAMES = st.from_regex(r"[a-z0-9_-]{1,20}(\.[a-z0-9_-]{1,20}){0,4}", fullmatch=True)


@given(st.binary(max_size=64))
def test_any_bytes_parse_to_a_host_or_nothing_and_never_raise(raw: bytes) -> None:
    host = parse_host(raw)
    if host is not None:
        assert host.name == host.name.lower()
        assert host.name.isascii()
        assert ":" not in host.name or host.name.startswith("[")
        assert AllowedHosts([]).allows([raw]) is (host.is_ip or host.name == "localhost")


@given(NAMES, st.one_of(st.none(), st.integers(0, 65535)))
def test_a_name_parses_to_itself_with_or_without_a_port(name: str, port: int | None) -> None:
    raw = name.encode() if port is None else f"{name}:{port}".encode()
    host = parse_host(raw)
    assert host is not None
    assert host.name == name
    assert AllowedHosts([name]).allows([raw])
    if not host.is_ip:
        under = AllowedHosts([f"*.{name}"])
        assert under.allows([b"a." + raw])
        assert under.allows([raw]) is (name == "localhost")  # the wildcard is for names under it


# -- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("gw.example.com", "gw.example.com"),
        ("GW.Example.com", "gw.example.com"),
        ("gw.example.com.", "gw.example.com"),
        (" gw.example.com ", "gw.example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Localhost", "*.localhost"),
        ("*", "*"),
        ("127.0.0.1", "127.0.0.1"),  # redundant (IP literals are always allowed), harmless
        ("[::1]", "[::1]"),
    ],
)
def test_an_allowed_host_pattern_is_normalized(given: str, normalized: str) -> None:
    assert allowed_host_pattern(given) == normalized


@pytest.mark.parametrize(
    "given",
    [
        "",
        "gw.example.com:8000",  # ports are not part of the check
        "http://gw.example.com",
        "*example.com",
        "gw.*.com",
        "*.*.example.com",
        "**",
        "*.",
        "gw example.com",
        "gw.exämple.com",
    ],
)
def test_an_invalid_allowed_host_pattern_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        allowed_host_pattern(given)
