"""Lanes: pipelined connections of the gateway's own to the store, for the commands on the way
of every run and every event (the event writer's scripts, the quota takes and releases).

redis-py gives each call a pooled connection (a lock and a wait to take it, another to give
it back), a retry policy, observability hooks and timeout contexts: on a 2-CPU machine about
100 µs of CPU per call, more than the round trip itself, and paid twice on the way of a run's
first token (its quota take, then the token's write). A lane sends a command in the caller's
own step (one write to the socket) and resolves its reply in the protocol's
``data_received``, in order: what a reply costs is a parse and a future. Any number of
callers share a lane; their commands are pipelined, and Redis answers a connection's
commands in the order they came.

::

    caller ──execute()──▶ Lane ──transport.write()──▶ Redis
       ▲                    │ futures, in send order
       └──── future ◀── _LaneProtocol.data_received() ◀── replies, in the same order

A lane is made on redis-py's own connection (so every URL form works: TCP, TLS, a Unix
socket, and the AUTH, SELECT and HELLO of its set-up), whose transport it then takes over.
On a Redis Cluster, :class:`StoreLanes` keeps a lane per master and sends a command to the
master of its first key's slot; a command the cluster redirects (``MOVED``, ``ASK``, a slot
migrating or down) is sent again through redis-py's cluster client, which follows the
redirection and learns the new slot map.

Bounds: a lane whose peer has stopped reading holds at most :data:`MAX_BUFFERED` bytes, and
one whose peer reads but does not answer at most :data:`MAX_IN_FLIGHT` commands, before it
is dropped (its callers get a ``ConnectionError``); each caller bounds its own
wait (``asyncio.timeout``). A dropped lane fails every command in flight with a
``ConnectionError`` and is connected again by the next command. A blocking command
(``XREAD BLOCK``, a subscription) never goes on a lane: it would hold up every command
behind it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    InvalidResponse,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.cluster.client import StoreClient, ready_client
from streams.cluster.wire import pack_command

__all__ = ["MAX_BUFFERED", "MAX_IN_FLIGHT", "Lane", "StoreLanes", "command_key"]

#: The most bytes a lane holds unsent (its peer not reading) before it is dropped.
MAX_BUFFERED = 16 * 1024 * 1024
#: The most commands a lane has in flight (its peer reading but not answering: a script
#: that hangs, say) before it is dropped; far above what its callers' timeouts let pile up.
MAX_IN_FLIGHT = 100_000

# What a cluster answers for a command sent to a master that no longer serves its slot (or
# cannot now): sent again through redis-py's cluster client. MovedError is an AskError.
_REDIRECTIONS = (AskError, TryAgainError, ClusterDownError)


def command_key(command: Sequence[Any]) -> Any:
    """The key a command is routed by on a cluster: a script's first key, else its first
    argument (every command sent on lanes names a key there)."""
    name = command[0]
    if isinstance(name, bytes):
        name = name.decode()
    if name.upper() in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"):
        if int(command[2]) < 1:
            raise ValueError(f"a script sent on a lane names a key to route by: {command[:3]}")
        return command[3]
    return command[1]


class _LaneProtocol(asyncio.Protocol):
    """The replies of a lane's connection, each resolving the oldest future waiting."""

    def __init__(self) -> None:
        # redis-py's own mapping of error replies to its exception classes (NoScriptError,
        # MovedError, …), as its parser gives them.
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.WriteTransport | None = None
        self.stream_writer: asyncio.StreamWriter | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiting, self.waiting = self.waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(
                    RedisConnectionError(f"the store closed the connection: {exc or 'EOF'}")
                )

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future = self.waiting.popleft()
                if future.done():
                    continue  # its caller gave up: the reply is dropped, the order kept
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (InvalidResponse, IndexError) as exc:  # garbage, or a reply nobody asked for
            if self.transport is not None:
                self.transport.abort()
            self.connection_lost(exc)


class Lane:
    """One pipelined connection to one Redis (one master of a cluster), connected when first
    used and again after it is dropped."""

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        *,
        max_buffered: int = MAX_BUFFERED,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._make = connect  # a redis-py connection, for its set-up only
        self._max_buffered = max_buffered
        self._max_in_flight = max_in_flight
        self._protocol: _LaneProtocol | None = None
        self._connecting = asyncio.Lock()
        self.closed = False

    @property
    def connected(self) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.transport is not None

    @property
    def in_flight(self) -> int:
        """Commands sent whose replies have not come yet (their callers' or given up)."""
        protocol = self._protocol
        return len(protocol.waiting) if protocol is not None else 0

    def send_nowait(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Send ``commands`` in one write, in the caller's step, on a lane that is connected;
        a future of each one's reply, in order."""
        protocol = self._protocol
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None:
            raise RedisConnectionError("the lane is not connected")
        if transport.get_write_buffer_size() > self._max_buffered:
            transport.abort()
            raise RedisConnectionError(
                f"the store has not read {self._max_buffered} bytes sent to it: the lane is dropped"
            )
        if len(protocol.waiting) + len(commands) > self._max_in_flight:
            transport.abort()
            raise RedisConnectionError(
                f"the store has not answered {len(protocol.waiting)} commands: the lane is dropped"
            )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        protocol.waiting.extend(futures)
        transport.write(b"".join([pack_command(*command) for command in commands]))
        return futures

    async def connect(self) -> None:
        """Connect the lane, if it is not (bounded by the connection's connect timeout)."""
        async with self._connecting:
            if self.closed:
                raise RedisConnectionError("the lane is closed")
            protocol = self._protocol
            if protocol is not None and protocol.transport is not None:
                return  # another caller connected it meanwhile
            connection = self._make()
            await connection.connect()  # type: ignore[no-untyped-call]  # bounded: connect timeout
            reader, writer = connection._reader, connection._writer
            assert reader is not None
            assert writer is not None
            # The transport is the lane's from now: redis-py's connection lets go of it
            # (its own close, or its finalizer, would otherwise close it).
            connection._reader = connection._writer = None
            transport = writer.transport
            if reader._buffer:  # type: ignore[attr-defined]
                # Nothing comes unasked for on a RESP2 connection once it is set up.
                transport.abort()
                raise RedisConnectionError("the store sent data no command asked for")
            protocol = _LaneProtocol()
            protocol.transport = transport
            # Kept: a StreamWriter closes its transport when collected (Python 3.11.5+).
            protocol.stream_writer = writer
            transport.set_protocol(protocol)
            if self.closed:  # closed while connecting
                transport.close()
                raise RedisConnectionError("the lane is closed")
            self._protocol = protocol

    def close(self) -> None:
        """Drop the connection; commands in flight fail, later ones are refused."""
        self.closed = True
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            protocol.connection_lost(None)


class StoreLanes:
    """The lanes of a store client: one for a single Redis, one per master of a cluster.

    :meth:`execute` sends one command, :meth:`execute_many` several in one write per lane;
    both raise or return what redis-py's call (or pipeline, with ``raise_on_error=False``)
    would, for the commands used here: scripts (``EVALSHA``) and plain key commands. No
    timeout of their own: the caller bounds its wait.
    """

    def __init__(
        self,
        client: StoreClient,
        *,
        max_buffered: int = MAX_BUFFERED,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._client = client
        self._bounds = {"max_buffered": max_buffered, "max_in_flight": max_in_flight}
        # Looked up once: redis-py's clients are Protocols, whose isinstance is slow.
        self._cluster = client if isinstance(client, aioredis.RedisCluster) else None
        self._ready = self._cluster is None  # a cluster's slot map is known
        self._lanes: dict[str, Lane] = {}
        self.closed = False

    async def execute(self, *command: Any) -> Any:
        """Send ``command`` and return its reply (raise its error)."""
        (reply,) = await self.execute_many([command])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (on a cluster: each to its key's master, in one write per
        master) and return their replies in order, a command's error as its reply; a lane's
        failure (the store unreachable) is raised."""
        if self.closed:
            raise RedisConnectionError("the store's lanes are closed")
        if not commands:
            return []
        if not self._ready:
            await ready_client(self._client)
            self._ready = True
        routes = self._routes(commands)
        futures: list[asyncio.Future[Any]] = []
        try:
            for lane in set(routes):
                if not lane.connected:
                    await lane.connect()
            futures = self._send(commands, routes)
        except BaseException:
            _let_go(futures)
            raise
        return await self.replies(commands, futures)

    def send_nowait(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]] | None:
        """Send ``commands`` in the caller's step, as :meth:`execute_many` would: a future of
        each one's reply (read them with :meth:`replies`), or None, having sent nothing, if
        a lane they need is not connected yet (nor the cluster's slot map known)."""
        if self.closed or not self._ready:
            return None
        if not commands:
            return []
        routes = self._routes(commands)
        if not all(lane.connected for lane in routes):
            return None
        return self._send(commands, routes)

    async def replies(
        self, commands: Sequence[Sequence[Any]], futures: Sequence[asyncio.Future[Any]]
    ) -> list[Any]:
        """The replies of ``commands`` sent with :meth:`send_nowait`, in order, errors as
        replies; a command a cluster redirected is sent again, through redis-py's client.
        Cancelled (or a lane failing), every future is let go."""
        replies: list[Any] = []
        try:
            for future in futures:
                try:
                    replies.append(await future)
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            _let_go(futures)
            raise
        if self._cluster is not None:
            for index, reply in enumerate(replies):
                if isinstance(reply, _REDIRECTIONS):
                    replies[index] = await self._redirected(commands[index])
        return replies

    def _send(
        self, commands: Sequence[Sequence[Any]], routes: Sequence[Lane]
    ) -> list[asyncio.Future[Any]]:
        """Each command on its lane, one write per lane; the futures in the commands' order."""
        if len(routes) == 1 or self._cluster is None:
            return routes[0].send_nowait(commands)  # one lane: no sorting out
        by_lane: dict[Lane, list[int]] = {}
        for index, lane in enumerate(routes):
            by_lane.setdefault(lane, []).append(index)
        futures: list[asyncio.Future[Any] | None] = [None] * len(commands)
        sent: list[asyncio.Future[Any]] = []
        try:
            for lane, indexes in by_lane.items():
                for index, future in zip(
                    indexes, lane.send_nowait([commands[i] for i in indexes]), strict=True
                ):
                    futures[index] = future
                    sent.append(future)
        except BaseException:
            _let_go(sent)
            raise
        return [future for future in futures if future is not None]

    async def _redirected(self, command: Sequence[Any]) -> Any:
        """``command`` sent again through redis-py's cluster client, which follows the
        redirection (and learns the slot map); its reply, or its error as its reply. The
        reply is redis-py's, which for the commands sent on lanes (scripts, commands that
        answer integers) is the server's as a lane gives it."""
        try:
            return await self._client.execute_command(*command)
        except ResponseError as exc:
            return exc

    def _routes(self, commands: Sequence[Sequence[Any]]) -> list[Lane]:
        """Each command's lane: the one lane of a single Redis, the master of the command's
        key's slot on a cluster (whose slot map must be known: see ready_client)."""
        client = self._cluster
        if client is None:
            lane = self._lanes.get("")
            if lane is None:
                single = self._client
                assert isinstance(single, aioredis.Redis)
                lane = self._lanes[""] = Lane(
                    single.connection_pool.make_connection, **self._bounds
                )
            return [lane] * len(commands)
        routes = []
        for command in commands:
            try:
                slot = client.keyslot(command_key(command))
                node = client.nodes_manager.get_node_from_slot(slot)
            except RedisClusterException as exc:  # no master serves the slot (now)
                raise RedisConnectionError(f"the cluster cannot take the command: {exc}") from exc
            lane = self._lanes.get(node.name)
            if lane is None:
                lane = self._lanes[node.name] = Lane(
                    functools.partial(node.connection_class, **node.connection_kwargs),
                    **self._bounds,
                )
            routes.append(lane)
        return routes

    @property
    def in_flight(self) -> int:
        """Commands sent on every lane whose replies have not come yet."""
        return sum(lane.in_flight for lane in self._lanes.values())

    def close(self) -> None:
        """Drop every lane (commands in flight fail with a ConnectionError)."""
        self.closed = True
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            lane.close()


def _let_go(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``futures``: their replies, when they come, are dropped (the order is kept),
    and the error of one that failed already (its lane dropped) is not logged as never
    retrieved (``cancel`` on a done future clears that)."""
    for future in futures:
        future.cancel()
