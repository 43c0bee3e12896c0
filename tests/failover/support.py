"""What the failover suite's tests share: a gateway with one model group over two scripted
upstreams, the run's text as a client reads it, and the check that no upstream request
outlives its run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from tests.sockets import TCP_STATES, eventually
from tests.support import RunningGateway, running_gateway
from tests.upstream_server import UpstreamServer

__all__ = [
    "GROUP",
    "closed_port_url",
    "deltas",
    "established_to",
    "group_gateway",
    "no_request_left_open",
    "of_type",
]

GROUP = "smart"  # the model group's name, over the routes "a" (first) and "b"


@contextlib.contextmanager
def group_gateway(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    **group: Any,
) -> Iterator[RunningGateway]:
    """A gateway with the routes ``a`` and ``b`` (route settings, e.g. from
    :func:`tests.upstream_server.route`) and the model group :data:`GROUP` = [a, b], its
    settings ``group`` (``policy``, ``hedge_after``, ...)."""
    groups = {GROUP: {"routes": ["a", "b"], **group}}
    with running_gateway(routes={"a": dict(a), "b": dict(b)}, groups=groups) as gateway:
        yield gateway


def closed_port_url() -> str:
    """The base URL of an upstream that has stopped: its port refuses connections."""
    with UpstreamServer() as gone:
        return gone.base_url


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The native events of type ``kind``."""
    return [event for event in events if event["type"] == kind]


def deltas(events: list[dict[str, Any]]) -> str:
    """The text of a native run's ``message.delta`` events, joined."""
    return "".join(event["delta"] for event in of_type(events, "message.delta"))


def established_to(port: int) -> list[int]:
    """The local ports of this host's ESTABLISHED TCP connections to 127.0.0.1:``port``
    (the client side: the gateway's connections to an upstream), from the kernel's table."""
    found: list[int] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (
                    int(remote.rsplit(":", 1)[1], 16) == port
                    and TCP_STATES.get(fields[3]) == "ESTABLISHED"
                ):
                    found.append(int(local.rsplit(":", 1)[1], 16))
    return found


async def no_request_left_open(*servers: UpstreamServer, timeout: float = 5) -> None:
    """Wait until every request each of ``servers`` saw has been answered to its end or
    left by the gateway, and no connection to any of them is ESTABLISHED any more."""

    def settled() -> bool:
        records = [record for server in servers for record in server.requests]
        if any(r.finished_at is None and not r.disconnected.is_set() for r in records):
            return False
        return not any(established_to(server.port) for server in servers)

    await eventually(settled, timeout)
