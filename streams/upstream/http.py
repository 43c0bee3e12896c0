"""The connections upstream requests go over: httpx transports (connection pools), used
without an ``httpx.AsyncClient`` around them.

A client does, on every request, what a gateway has no use for upstream: an auth flow and a
redirect loop (both no-ops here), a cookie jar (which, shared by every caller, would send one
caller's upstream cookies with another's requests), a transport picked by matching the URL
against proxy patterns. Together they were a tenth of a short streamed request's CPU through
the gateway. Here each route is given its transport once, at start-up: through the proxy the
environment names for its URL (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, except hosts
in ``NO_PROXY``), else direct.
"""

from __future__ import annotations

import urllib.request
from types import TracebackType

import httpx

# Each route bounds its own requests in flight; keep-alive connections are shared.
DEFAULT_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100)
USER_AGENT = "agent-gateway/0.1"


def proxy_for(url: str, environment: dict[str, str] | None = None) -> str | None:
    """The proxy the environment names for ``url`` (``None``: connect directly).

    ``environment`` is what :func:`urllib.request.getproxies` reads from the ``*_PROXY``
    variables (``{"https": "http://proxy:3128", "no": "internal.example,10.0.0.1", …}``);
    by default, the process's own."""
    proxies = urllib.request.getproxies() if environment is None else environment
    parsed = httpx.URL(url)
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if not proxy or _bypassed(parsed.host, parsed.port, proxies.get("no", "")):
        return None
    return proxy


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names ``host``: ``*``, the host itself, or a domain it is in
    (``example.com`` and ``.example.com`` both cover ``api.example.com``), with or without
    the port."""
    host = host.lower()
    for entry in no_proxy.lower().replace(" ", "").split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = entry, ""
        if entry.count(":") == 1:  # host:port (an IPv6 address has more colons)
            name, entry_port = entry.split(":")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


class UpstreamHTTP:
    """The transports of every upstream route, made on first use and closed together."""

    def __init__(self, *, limits: httpx.Limits = DEFAULT_LIMITS, trust_env: bool = True) -> None:
        self._limits = limits
        self._trust_env = trust_env
        self._transports: dict[str | None, httpx.AsyncHTTPTransport] = {}

    def transport_for(self, url: str) -> httpx.AsyncHTTPTransport:
        """The transport for requests to ``url``: one per proxy, one for direct requests."""
        proxy = proxy_for(url) if self._trust_env else None
        transport = self._transports.get(proxy)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(limits=self._limits, proxy=proxy)
            self._transports[proxy] = transport
        return transport

    async def aclose(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()

    async def __aenter__(self) -> UpstreamHTTP:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
