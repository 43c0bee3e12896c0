"""Which ``Host`` a request may name: the defence against DNS rebinding.

A page of any domain whose DNS answer is re-pointed to 127.0.0.1 is, to the browser,
same-origin with a gateway listening there: it may ``POST /v1/runs``, read the answers and
open a WebSocket whose ``Origin`` matches its ``Host``. What gives it away is the name in
``Host``: the attacker's, never the gateway's. So an open gateway answers only requests that
name it:

* ``localhost`` (browsers resolve it to loopback themselves, never asking DNS);
* an IP literal (``127.0.0.1``, ``[::1]``, a pod's IP from an orchestrator's probe): an
  address is looked up in no DNS, so it cannot be rebound; a rebound page's ``Host`` is
  always a *name*;
* the configured ``allowed_hosts``: exact names, ``*.example.com`` (any name under
  ``example.com``, not ``example.com`` itself) or ``*`` (any host: no check at all).

The port is not part of the check (the rebound page names the gateway's port as well, so
it tells nothing apart). A request without ``Host`` is allowed: a browser always sends one.

:func:`parse_host` and :class:`AllowedHosts` are pure; :class:`HostCheck` is the pure-ASGI
layer that answers everything else with a 400 (HTTP) or refuses the handshake (HTTP 403,
WebSocket).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import error_body, send_error_body
from gateway.streaming.disconnect import FOREIGN_HOST

__all__ = [
    "LOOPBACK_NAMES",
    "MAX_SEEN",
    "MAX_SHOWN",
    "AllowedHosts",
    "HostCheck",
    "HostName",
    "allowed_host_pattern",
    "host_values",
    "parse_host",
]

logger = logging.getLogger("gateway.hosts")

LOOPBACK_NAMES = frozenset({"localhost"})

# RFC 3986's host [":" port], with the name part narrowed to what DNS names are made of:
# an IP-literal in brackets, or a name of letters, digits, "-", "_" and ".".
_HOST = re.compile(
    rb"[ \t]*(?:\[(?P<literal>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))"
    rb"(?P<port>:[0-9]*)?[ \t]*"
)
_LABELS = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
MAX_SHOWN = 100  # characters of a refused Host quoted back in the error
MAX_SEEN = 64  # allowed Host values remembered


@dataclass(frozen=True, slots=True)
class HostName:
    """The host of a ``Host`` header: lower-case, without the port or a final ``.``; an
    IPv6 address in its brackets."""

    name: str
    is_ip: bool


def parse_host(value: bytes) -> HostName | None:
    """The host a ``Host`` header value names, or ``None`` if it is not a valid one."""
    parsed = _parse(value)
    return parsed[0] if parsed is not None else None


def _parse(value: bytes) -> tuple[HostName, bool] | None:
    """The host, and whether a port came with it."""
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    has_port = match.group("port") is not None
    literal = match.group("literal")
    if literal is not None:
        text = literal.decode("ascii").lower()
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return None
        return HostName(f"[{text}]", True), has_port
    name = match.group("name").decode("ascii").lower()
    if name.endswith("."):
        name = name[:-1]  # the root's dot: "localhost." is "localhost"
    if not _LABELS.fullmatch(name):
        return None
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return HostName(name, False), has_port
    return HostName(name, True), has_port


def allowed_host_pattern(pattern: str) -> str:
    """``pattern`` (an ``allowed_hosts`` entry) normalized: a host name, ``*.`` and a
    name, or ``*``. Raises ``ValueError`` for anything else (a port, a URL, a wildcard
    elsewhere)."""
    text = pattern.strip().lower()
    if text == "*":
        return text
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    try:
        parsed = _parse(name.encode("ascii"))
    except UnicodeEncodeError:
        parsed = None
    if parsed is None or parsed[1] or (wildcard and parsed[0].is_ip):
        raise ValueError(
            f"allowed_hosts: {pattern!r} is not a host name, '*.' and a name, or '*' "
            "(without a scheme or a port)"
        )
    return ("*." if wildcard else "") + parsed[0].name


class AllowedHosts:
    """What ``Host`` may name: loopback's name, any IP literal, and ``patterns``."""

    def __init__(self, patterns: Iterable[str]) -> None:
        normalized = [allowed_host_pattern(pattern) for pattern in patterns]
        self.any = "*" in normalized
        self.names = LOOPBACK_NAMES | {p for p in normalized if not p.startswith("*")}
        # "*.example.com" matches names ending in ".example.com".
        self.suffixes = tuple(p[1:] for p in normalized if p.startswith("*."))
        # Header values seen allowed: a gateway sees few, and parsing one costs ~3 us.
        # Bounded, and refused values are never kept.
        self._seen: set[bytes] = set()

    def allows(self, values: Sequence[bytes]) -> bool:
        """Whether a request with these ``Host`` header values may be answered (none: yes;
        more than one: no, as RFC 9112 has it)."""
        if self.any or not values:
            return True
        if len(values) > 1:
            return False
        value = values[0]
        if value in self._seen:
            return True
        host = parse_host(value)
        if host is None:
            return False
        if not (host.is_ip or host.name in self.names or host.name.endswith(self.suffixes)):
            return False
        if len(self._seen) < MAX_SEEN:
            self._seen.add(value)
        return True


def host_values(scope: Scope) -> list[bytes]:
    return [value for name, value in scope["headers"] if name == b"host"]


class HostCheck:
    """Answer only requests whose ``Host`` is allowed: others get a 400 with the gateway's
    error body (``host_not_allowed``); a WebSocket handshake is refused before it is
    accepted (HTTP 403, as for a foreign ``Origin``) and ``on_websocket_refused`` is
    called, so it is counted with the other refusals."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: AllowedHosts,
        on_websocket_refused: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.on_websocket_refused = on_websocket_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        values = host_values(scope)
        if self.hosts.allows(values):
            await self.app(scope, receive, send)
            return
        host = parse_host(values[0]) if len(values) == 1 else None
        shown = host.name if host else b", ".join(values).decode("latin-1")[:MAX_SHOWN]
        logger.info("refused a %s request for host %r", scope["type"], shown)
        if scope["type"] == "websocket":
            # Before websocket.accept: the server answers the handshake with HTTP 403.
            await send(
                {
                    "type": "websocket.close",
                    "code": FOREIGN_HOST.ws_close_code,
                    "reason": FOREIGN_HOST.ws_reason_for(),
                }
            )
            if self.on_websocket_refused is not None:
                self.on_websocket_refused()
            return
        message = (
            f"this gateway does not answer to the host {shown!r}: add it to "
            "allowed_hosts (GATEWAY_ALLOWED_HOSTS) if it is one of its names"
        )
        await send_error_body(send, 400, error_body("host_not_allowed", message))
