"""Which connection an upstream route's requests take: direct, or through the proxy the
environment names (``*_PROXY``, ``NO_PROXY``), chosen once per route."""

from __future__ import annotations

import pytest

from streams.upstream.http import UpstreamHTTP, proxy_for

ENVIRONMENT = {
    "https": "http://proxy.example:3128",
    "no": "localhost, .internal.example,10.0.0.1:8443,Other.Example",
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
