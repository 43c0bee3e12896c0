"""The stores a gateway's settings choose: memory by default, Redis with a ``redis_url``."""

from __future__ import annotations

from redis.asyncio import RedisCluster

from gateway.limits.quotas import MemoryQuotas
from gateway.settings import Settings
from gateway.stores import MemoryStores, RedisStores, stores_for
from streams.cluster.backend import ClusterBackend
from streams.directory import LocalRunDirectory
from streams.log import MemoryEventLog, Retention
from streams.runs.manager import RunManager


def test_without_a_redis_url_every_store_is_in_memory(manager: RunManager) -> None:
    stores = stores_for(Settings(), Retention())
    assert isinstance(stores, MemoryStores)
    assert isinstance(stores.log_factory("run_0000000000000001", Retention()), MemoryEventLog)
    assert isinstance(stores.directory(manager), LocalRunDirectory)
    assert isinstance(stores.quotas(), MemoryQuotas)


def test_a_redis_url_chooses_the_shared_stores() -> None:
    stores = stores_for(Settings(redis_url="redis://127.0.0.1:1/0"), Retention())
    assert isinstance(stores, RedisStores)


async def test_the_memory_stores_enter_and_leave_at_once() -> None:
    async with MemoryStores(Settings()) as stores:
        assert isinstance(stores.quotas(), MemoryQuotas)


def test_a_cluster_url_chooses_the_shared_stores_on_a_cluster_client(
    manager: RunManager,
) -> None:
    url = "redis+cluster://127.0.0.1:1,127.0.0.1:2/"
    stores = stores_for(Settings(redis_url=url), Retention())
    assert isinstance(stores, RedisStores)
    directory = stores.directory(manager)
    assert isinstance(directory, ClusterBackend)
    assert isinstance(directory.redis, RedisCluster)
    assert isinstance(directory.reader_redis, RedisCluster)
