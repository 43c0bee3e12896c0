"""The connections upstream requests go over: httpx transports (connection pools), used
without an ``httpx.AsyncClient`` around them.

A client does, on every request, what a gateway has no use for upstream: an auth flow and a
redirect loop (both no-ops here), a cookie jar (which, shared by every caller, would send one
caller's upstream cookies with another's requests), a transport picked by matching the URL
against proxy patterns. Together they were a tenth of a short streamed request's CPU through
the gateway. Here each route is given its transport once, at start-up: through the proxy the
environment names for its URL (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, except hosts
in ``NO_PROXY``), else direct.

The pools are httpcore's, with one pass of theirs made linear in the number of connections
(:class:`LinearPassPool`): with many streams open to one upstream it was quadratic.
"""

from __future__ import annotations

import time
import urllib.request
from types import TracebackType

import httpcore
import httpx

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_PORTS",
    "USER_AGENT",
    "LinearPassPool",
    "UpstreamHTTP",
    "proxy_for",
    "upstream_transport",
]

# Each route bounds its own requests in flight; keep-alive connections are shared.
DEFAULT_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100)
USER_AGENT = "agent-gateway/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}


def proxy_for(url: str, environment: dict[str, str] | None = None) -> str | None:
    """The proxy the environment names for ``url`` (``None``: connect directly).

    ``environment`` is what :func:`urllib.request.getproxies` reads from the ``*_PROXY``
    variables (``{"https": "http://proxy:3128", "no": "internal.example,10.0.0.1", …}``);
    by default, the process's own."""
    proxies = urllib.request.getproxies() if environment is None else environment
    parsed = httpx.URL(url)
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    port = parsed.port or DEFAULT_PORTS.get(parsed.scheme)
    if not proxy or _bypassed(parsed.host, port, proxies.get("no", "")):
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


class LinearPassPool(httpcore.AsyncConnectionPool):
    """httpcore's pass over the pool, made linear in the number of connections.

    httpcore (1.0.9) runs this pass whenever a request arrives or a response is closed.

    - Its clean-up counted every pooled connection again for each idle one: O(n²) in the
      pool's size, which held 100 connections at 100 concurrent streams, and the pass took
      a fifth of the gateway's CPU (encode/httpcore#1035 fixes it; not released). Here the
      count is kept as connections are dropped, with the same outcome: closed connections
      are dropped, expired ones closed, and idle ones closed while the pool holds more
      connections than ``max_keepalive_connections``.
    - It also asked every idle connection whether it had expired, each time: a ``poll`` of
      its socket behind several layers of anyio's attribute lookup, for every connection on
      every request. Here the pool is swept (every connection asked) at most every
      ``sweep_interval`` seconds, or on every pass while it is over a limit, and an idle
      connection is always asked before it is reused (its server may have closed it), so
      no request goes out on an expired connection.

    Assigning queued requests to connections is otherwise httpcore's own code."""

    sweep_interval = 1.0  # seconds between checks of every connection for expiry
    _swept_at = -float("inf")

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        now = time.monotonic()
        sweep = now - self._swept_at >= self.sweep_interval
        if sweep:
            self._swept_at = now
        count = len(self._connections)
        # Between sweeps, a pool within its limits is left as it is: a closed or expired
        # connection is never available, so no request is given it, and the next sweep
        # drops it. Over a limit, every pass cleans up, as httpcore's does.
        if sweep or count > self._max_keepalive_connections or count >= self._max_connections:
            kept: list[httpcore.AsyncConnectionInterface] = []
            for connection in self._connections:
                if connection.is_closed():
                    count -= 1
                elif (sweep and connection.has_expired()) or (
                    count > self._max_keepalive_connections and connection.is_idle()
                ):
                    count -= 1
                    closing.append(connection)
                else:
                    kept.append(connection)
            self._connections = kept

        # Assign queued requests to connections (as in httpcore, which lists every
        # available and every idle connection for each request, to take the first).
        queued_requests = [request for request in self._requests if request.is_queued()]
        for pool_request in queued_requests:
            origin = pool_request.request.url.origin
            chosen = self._first_available(origin, closing)
            if chosen is None and len(self._connections) >= self._max_connections:
                idle = next((c for c in self._connections if c.is_idle()), None)
                if idle is None:
                    continue  # the request waits
                self._connections.remove(idle)  # closed to make room
                closing.append(idle)
            if chosen is None:
                chosen = self.create_connection(origin)
                self._connections.append(chosen)
            pool_request.assign_to_connection(chosen)
        return closing

    def _first_available(
        self, origin: httpcore.Origin, closing: list[httpcore.AsyncConnectionInterface]
    ) -> httpcore.AsyncConnectionInterface | None:
        """The first connection that can take a request to ``origin`` now; expired ones
        found on the way are closed."""
        found, expired = None, []
        for connection in self._connections:
            if connection.can_handle_request(origin) and connection.is_available():
                if not connection.has_expired():
                    found = connection
                    break
                expired.append(connection)
        for connection in expired:
            self._connections.remove(connection)
            closing.append(connection)
        return found


class _LinearHTTPProxy(LinearPassPool, httpcore.AsyncHTTPProxy):
    """A pool through an HTTP proxy, with the same pass."""


def upstream_transport(limits: httpx.Limits, proxy: str | None) -> httpx.AsyncHTTPTransport:
    """httpx's transport, its pool's pass made linear (see :class:`LinearPassPool`). httpx
    makes the pool (TLS, proxy); only its class is changed, to one that adds no state."""
    transport = httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
    pool = transport._pool
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = LinearPassPool
    elif type(pool) is httpcore.AsyncHTTPProxy:
        pool.__class__ = _LinearHTTPProxy
    return transport


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
            transport = upstream_transport(self._limits, proxy)
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
