"""Which connection an upstream route's requests take: direct, or through the proxy the
environment names (``*_PROXY``, ``NO_PROXY``), chosen once per route."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import httpcore
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.upstream.http import LinearPassPool, UpstreamHTTP, proxy_for

ENVIRONMENT = {
    "https": "http://proxy.example:3128",
    "no": "localhost, .internal.example,10.0.0.1:8443,Other.Example,api.example:443",
}


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        pytest.param("https://api.openai.com/v1", "http://proxy.example:3128", id="proxied"),
        pytest.param("http://api.openai.com/v1", None, id="no-proxy-for-the-scheme"),
        pytest.param("https://localhost:8000/v1", None, id="no-proxy-host-any-port"),
        pytest.param("https://llm.internal.example/v1", None, id="no-proxy-subdomain"),
        pytest.param("https://internal.example/v1", None, id="no-proxy-domain-itself"),
        pytest.param("https://notinternal.example/v1", "http://proxy.example:3128", id="suffix"),
        pytest.param("https://10.0.0.1:8443/v1", None, id="no-proxy-host-and-port"),
        pytest.param("https://10.0.0.1/v1", "http://proxy.example:3128", id="other-port"),
        pytest.param("https://api.example:443/v1", None, id="no-proxy-default-port"),
        pytest.param("https://api.example/v1", None, id="no-proxy-port-the-scheme-default"),
        pytest.param("https://API.other.example/v1", None, id="case-insensitive"),
    ],
)
def test_the_proxy_for_a_url_follows_the_environment(url: str, proxy: str | None) -> None:
    assert proxy_for(url, ENVIRONMENT) == proxy


def test_all_proxy_covers_every_scheme_and_a_star_bypasses_it() -> None:
    assert proxy_for("http://a.example", {"all": "http://p:1"}) == "http://p:1"
    assert proxy_for("http://a.example", {"all": "http://p:1", "no": "*"}) is None


def test_no_environment_means_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    assert proxy_for("https://api.openai.com/v1") is None


async def test_routes_share_a_transport_per_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    async with UpstreamHTTP() as http:
        openai = http.transport_for("https://api.openai.com/v1")
        anthropic = http.transport_for("https://api.anthropic.com/v1")
        internal = http.transport_for("https://llm.internal.example/v1")
        assert openai is anthropic
        assert internal is not openai
    async with UpstreamHTTP(trust_env=False) as http:
        assert http.transport_for("https://api.openai.com/v1") is http.transport_for(
            "https://llm.internal.example/v1"
        )


# -- the pool's pass ------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """A pooled connection's state, as the pass sees it."""

    name: str
    origin: str
    closed: bool = False
    expired: bool = False
    idle: bool = False
    available: bool = False
    asked: int = 0  # times asked whether it has expired

    def is_closed(self) -> bool:
        return self.closed

    def has_expired(self) -> bool:
        self.asked += 1
        return self.expired

    def is_idle(self) -> bool:
        return self.idle

    def is_available(self) -> bool:
        return self.available

    def can_handle_request(self, origin: str) -> bool:
        return origin == self.origin


@dataclass(eq=False)
class PoolRequest:
    origin: str
    queued: bool
    assigned: list[str] = field(default_factory=list)

    @property
    def request(self) -> Any:
        return SimpleNamespace(url=SimpleNamespace(origin=self.origin))

    def is_queued(self) -> bool:
        return self.queued

    def assign_to_connection(self, connection: Connection) -> None:
        self.assigned.append(connection.name)


class HttpcorePool(httpcore.AsyncConnectionPool):
    def create_connection(self, origin: Any) -> Any:
        return Connection(f"new {origin}", origin)


class LinearPool(LinearPassPool):
    def create_connection(self, origin: Any) -> Any:
        return Connection(f"new {origin}", origin)


connections = st.lists(
    st.builds(
        Connection,
        name=st.just(""),
        origin=st.sampled_from(["a", "b"]),
        closed=st.booleans(),
        expired=st.booleans(),
        idle=st.booleans(),
        available=st.booleans(),
    ),
    max_size=12,
)
requests = st.lists(
    st.builds(PoolRequest, origin=st.sampled_from(["a", "b", "c"]), queued=st.booleans()),
    max_size=6,
)


def run_pass(
    pool_class: type[httpcore.AsyncConnectionPool],
    states: list[Connection],
    queue: list[PoolRequest],
    max_connections: int,
    max_keepalive: int,
) -> tuple[list[str], list[str], list[list[str]]]:
    pool = pool_class(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    pool._connections = [replace(c) for c in states]  # type: ignore[misc]
    pool._requests = [replace(r, assigned=[]) for r in queue]  # type: ignore[misc]
    closing = pool._assign_requests_to_connections()
    return (
        [c.name for c in closing],  # type: ignore[attr-defined]
        [c.name for c in pool._connections],  # type: ignore[attr-defined]
        [r.assigned for r in pool._requests],  # type: ignore[attr-defined]
    )


@given(
    states=connections,
    queue=requests,
    max_connections=st.integers(0, 14),
    max_keepalive=st.integers(0, 14),
)
def test_the_linear_pass_does_what_httpcores_pass_does(
    states: list[Connection], queue: list[PoolRequest], max_connections: int, max_keepalive: int
) -> None:
    for index, state in enumerate(states):
        state.name = f"c{index}"
    assert run_pass(LinearPool, states, queue, max_connections, max_keepalive) == run_pass(
        HttpcorePool, states, queue, max_connections, max_keepalive
    )


def test_between_sweeps_only_a_connection_about_to_be_reused_is_checked_for_expiry() -> None:
    pool = LinearPool(max_keepalive_connections=10)
    stale = Connection("stale", "a", idle=True, available=True, expired=True)
    fresh = Connection("fresh", "a", idle=True, available=True)
    other = Connection("other", "b", idle=True, available=True, expired=True)
    pool._connections = [stale, fresh, other]  # type: ignore[list-item]
    request = PoolRequest("a", queued=True)
    pool._requests = [request]  # type: ignore[list-item]
    pool._swept_at = time.monotonic()  # swept just now

    closing = pool._assign_requests_to_connections()

    assert request.assigned == ["fresh"]  # never the expired one
    assert closing == [stale]
    assert pool._connections == [fresh, other]
    assert other.asked == 0  # left for the next sweep


def test_between_sweeps_a_closed_connection_is_not_given_out_and_the_next_sweep_drops_it() -> None:
    pool = LinearPool(max_keepalive_connections=10)
    closed = Connection("closed", "a", closed=True)
    pool._connections = [closed]  # type: ignore[list-item]
    request = PoolRequest("a", queued=True)
    pool._requests = [request]  # type: ignore[list-item]
    pool._swept_at = time.monotonic()

    pool._assign_requests_to_connections()
    assert request.assigned == ["new a"]

    pool._requests = []
    pool._swept_at = -float("inf")  # a sweep is due
    pool._assign_requests_to_connections()
    assert [c.name for c in pool._connections] == ["new a"]  # type: ignore[attr-defined]


def test_a_full_pool_drops_its_closed_connections_on_every_pass() -> None:
    pool = LinearPool(max_connections=1, max_keepalive_connections=10)
    pool._connections = [Connection("closed", "a", closed=True)]  # type: ignore[list-item]
    request = PoolRequest("a", queued=True)
    pool._requests = [request]  # type: ignore[list-item]
    pool._swept_at = time.monotonic()

    pool._assign_requests_to_connections()

    assert request.assigned == ["new a"]  # the closed one made no room to wait for


async def test_upstream_transports_use_the_linear_pass() -> None:
    async with UpstreamHTTP(trust_env=False) as http:
        transport = http.transport_for("http://127.0.0.1:9/v1")
        assert isinstance(transport._pool, LinearPassPool)
