"""The one place the gateway's Redis clients are made: a single Redis or a Redis Cluster,
chosen by the URL's scheme.

=====================================================  ========================================
URL                                                    store
=====================================================  ========================================
``redis://host:port/db``, ``rediss://…``, ``unix://…``  one Redis (redis-py's own URL forms)
``redis+cluster://host:port[,host:port…]/``             a Redis Cluster, found from these seed
``rediss+cluster://…``                                  nodes (TLS with ``rediss``)
=====================================================  ========================================

Both clients have the same bounds: at most ``max_connections`` calls hold a connection at
once (on a cluster: per node) and a call waits at most ``timeout`` for its turn and for its
connect, a socket read at most ``timeout + 3`` s (above the longest blocking read), and a
dropped connection is retried once at once. redis-py's cluster pool fails a call at once past
its size (``MaxConnectionsError``: a burst of run starts reaches it) where a single Redis's
blocking pool waits: :class:`BoundedRedisCluster` makes a cluster's callers wait too.

The control channel is sharded pub/sub on both (``SSUBSCRIBE``, Redis 7+):
:func:`next_shard_message` reads it whichever client made the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from streams.cluster.wire import hiredis_packing

__all__ = [
    "CLUSTER_SCHEMES",
    "SINGLE_SCHEMES",
    "BoundedRedisCluster",
    "ClusterURL",
    "StoreClient",
    "close_client",
    "is_cluster_url",
    "next_shard_message",
    "parse_cluster_url",
    "ready_client",
    "store_client",
    "validate_store_url",
]

#: A client of the shared store: one Redis or a Redis Cluster.
StoreClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """What a ``redis+cluster://`` URL says: the seed nodes, TLS and the credentials."""

    nodes: tuple[tuple[str, int], ...]
    ssl: bool = False
    username: str | None = None
    password: str | None = None


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def validate_store_url(url: str) -> str:
    """``url`` if it is one the gateway can connect to, else a ValueError naming the
    accepted schemes (the settings' check)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)
    elif scheme not in SINGLE_SCHEMES:
        accepted = ", ".join(f"{s}://" for s in SINGLE_SCHEMES + CLUSTER_SCHEMES)
        raise ValueError(f"a Redis URL starts with one of {accepted}, not {url!r}")
    return url


def parse_cluster_url(url: str) -> ClusterURL:
    """The seed nodes and options of ``redis+cluster://[user:password@]host:port[,…]/``.

    A node without a port is on 6379; IPv6 addresses go in brackets. A database other than
    0, a query or a fragment is refused: a cluster has one database and no URL options here.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://, rediss+cluster://): {url!r}")
    # urlsplit cannot take several hosts: split off the credentials and the path by hand.
    netloc, _, path = rest.partition("/")
    if "?" in netloc or "#" in netloc or "?" in path or "#" in path:
        raise ValueError(f"a Redis Cluster URL takes no query nor fragment: {url!r}")
    if path not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {path!r}: {url!r}")
    credentials, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(part, url) for part in hosts.split(","))
    return ClusterURL(
        nodes=nodes, ssl=scheme.lower() == "rediss+cluster", username=username, password=password
    )


def _node(part: str, url: str) -> tuple[str, int]:
    if not part:
        raise ValueError(f"a Redis Cluster URL names its seed nodes (host:port,…): {url!r}")
    try:
        parsed = urlsplit(f"//{part}")
        host, port = parsed.hostname, parsed.port
    except ValueError as exc:
        raise ValueError(f"bad seed node {part!r} in {url!r}: {exc}") from None
    if not host:
        raise ValueError(f"bad seed node {part!r} in {url!r}")
    return host, port or 6379


def store_client(url: str, *, max_connections: int, timeout: float) -> StoreClient:
    """A client of the store ``url`` names, with at most ``max_connections`` connections (per
    node on a cluster), every wait bounded by ``timeout`` (see the module doc)."""
    bounds: dict[str, Any] = {
        "socket_timeout": timeout + 3.0,  # above the longest XREAD block
        "socket_connect_timeout": timeout,
        # One quick retry (a dropped pooled connection), not redis-py's ten with backoff:
        # an outage must be noticed within the calls' own timeouts.
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }
    if is_cluster_url(url):
        target = parse_cluster_url(url)
        return BoundedRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=max_connections,
            wait=timeout,
            ssl=target.ssl,
            username=target.username,
            password=target.password,
            **bounds,
        )
    # Callers wait (bounded) for a free connection rather than fail, as redis-py's default
    # pool does past its size (a burst of stream starts reaches 100).
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, **bounds
    )
    # The class the URL's scheme chose (TCP, TLS, a Unix socket), packing with hiredis.
    pool.connection_class = hiredis_packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


# Set while a task holds a turn of a BoundedRedisCluster: redis-py's pipeline runs the
# commands a redirection failed one by one through the client, inside the pipeline's turn.
_HOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("holding_turn", default=False)


class BoundedRedisCluster(aioredis.RedisCluster):
    """A cluster client whose commands and pipelines wait (at most ``wait`` seconds, then a
    ConnectionError, as a single Redis's blocking pool) for one of ``max_connections``
    turns, instead of failing with ``MaxConnectionsError`` when a node's pool is full. Each
    turn holds at most one connection per node, so no node's pool overflows; a few are kept
    for the sharded subscriptions, which take their connections from the same pools."""

    def __init__(self, *, wait: float, max_connections: int = 100, **options: Any) -> None:
        super().__init__(max_connections=max_connections, **options)
        # The nodes' connections (made from these kwargs as the client finds the nodes)
        # pack with hiredis, as a single Redis's do (RedisCluster takes no class to use).
        made = self.nodes_manager.connection_kwargs
        made["connection_class"] = hiredis_packing(made["connection_class"])
        self._turns = asyncio.Semaphore(max(1, max_connections - 2))
        self._wait = wait

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the client's turns (a no-op inside one already held)."""
        if _HOLDING.get():
            yield
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisConnectionError(
                f"no connection to the cluster free within {self._wait:g}s"
            ) from None
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # which refuses it
        # redis-py's stubs declare an attribute its pipelines set at run time abstract.
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    """A cluster pipeline that runs in one turn of its client (one connection per node)."""

    def __init__(self, client: BoundedRedisCluster, transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        self._bounded = client

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        async with self._bounded.turn():
            return await super().execute(raise_on_error, allow_redirections)


async def ready_client(client: StoreClient) -> None:
    """Set a cluster client up (find the cluster's nodes and slots) if it is not yet; a
    no-op for a single Redis and once done. Await it before a client's first commands:
    redis-py (8.1) sets a cluster client up on first use, and concurrent first uses race
    (connections closed under their callers: ConnectionError, AttributeError)."""
    if isinstance(client, aioredis.RedisCluster):
        await client.initialize()


async def close_client(client: StoreClient) -> None:
    """Close ``client`` and every connection of its pools (errors of a gone store ignored)."""
    with contextlib.suppress(RedisError, OSError):
        await client.aclose()
    if isinstance(client, aioredis.Redis):
        with contextlib.suppress(RedisError, OSError):
            await client.connection_pool.disconnect()


async def next_shard_message(pubsub: PubSub, timeout: float) -> dict[str, Any] | None:
    """The next message of a sharded pub/sub subscription (``SSUBSCRIBE``), waiting at most
    ``timeout``; None if none came. Raises ConnectionError once a cluster subscription has
    no node left (its slot moved and redis-py dropped it): the caller subscribes again."""
    if isinstance(pubsub, ClusterPubSub):
        if not pubsub.node_pubsub_mapping:
            # redis-py would answer None at once, forever: a busy loop, and a deaf listener.
            raise RedisConnectionError("the sharded subscription has no node any more")
        message = await pubsub.get_sharded_message(timeout=timeout)
    else:
        message = await pubsub.get_message(timeout=timeout)
    return message
