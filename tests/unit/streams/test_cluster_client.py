"""Which store a Redis URL names (``streams/cluster/client.py``): one Redis, or a Redis
Cluster from its seed nodes."""

from __future__ import annotations

import re

import pytest
import redis.asyncio as aioredis

from streams.cluster.client import (
    ClusterURL,
    is_cluster_url,
    parse_cluster_url,
    store_client,
    validate_store_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/",
            ClusterURL(nodes=(("127.0.0.1", 7000), ("127.0.0.1", 7001))),
        ),
        ("redis+cluster://redis-a:7000", ClusterURL(nodes=(("redis-a", 7000),))),
        ("redis+cluster://redis-a/0", ClusterURL(nodes=(("redis-a", 6379),))),
        ("REDIS+CLUSTER://a:1/", ClusterURL(nodes=(("a", 1),))),
        (
            "redis+cluster://[::1]:7000,[::1]:7001/",
            ClusterURL(nodes=(("::1", 7000), ("::1", 7001))),
        ),
        (
            "rediss+cluster://user:p%40ss@a:7000,b:7001/",
            ClusterURL(
                nodes=(("a", 7000), ("b", 7001)), ssl=True, username="user", password="p@ss"
            ),
        ),
        (
            "redis+cluster://:secret@a:7000/",
            ClusterURL(nodes=(("a", 7000),), username=None, password="secret"),
        ),
    ],
)
def test_a_cluster_url_gives_its_seed_nodes_and_options(url: str, expected: ClusterURL) -> None:
    assert parse_cluster_url(url) == expected
    assert is_cluster_url(url)
    assert validate_store_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster:///", "names its seed nodes"),
        ("redis+cluster://a:1,,b:2/", "names its seed nodes"),
        ("redis+cluster://a:1/3", "only database 0, not '3'"),
        ("redis+cluster://a:1/?ssl=true", "no query nor fragment"),
        ("redis+cluster://a:port/", "bad seed node 'a:port'"),
        ("redis+cluster://a:99999/", "bad seed node 'a:99999'"),
    ],
)
def test_a_bad_cluster_url_is_refused_saying_why(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_store_url(url)


@pytest.mark.parametrize("url", ["redis://a:6379/0", "rediss://a:6380/1", "unix:///tmp/r.sock"])
def test_a_single_redis_url_is_left_to_redis_py(url: str) -> None:
    assert not is_cluster_url(url)
    assert validate_store_url(url) == url


@pytest.mark.parametrize("url", ["http://a:6379", "a:6379", "redis-cluster://a:1/", ""])
def test_any_other_url_is_refused_naming_the_accepted_schemes(url: str) -> None:
    with pytest.raises(ValueError, match=r"^a Redis URL starts with one of") as raised:
        validate_store_url(url)
    assert str(raised.value) == (
        "a Redis URL starts with one of redis://, rediss://, unix://, redis+cluster://, "
        f"rediss+cluster://, not {url!r}"
    )


async def test_the_url_chooses_the_client() -> None:
    single = store_client("redis://127.0.0.1:1/0", max_connections=5, timeout=1.0)
    cluster = store_client(
        "redis+cluster://127.0.0.1:1,127.0.0.1:2/", max_connections=5, timeout=1.0
    )
    try:
        assert isinstance(single, aioredis.Redis)
        assert isinstance(single.connection_pool, aioredis.BlockingConnectionPool)
        assert single.connection_pool.max_connections == 5
        assert isinstance(cluster, aioredis.RedisCluster)
        assert [(n.host, n.port) for n in cluster.startup_nodes] == [
            ("127.0.0.1", 1),
            ("127.0.0.1", 2),
        ]
    finally:
        await single.aclose()
        await cluster.aclose()
