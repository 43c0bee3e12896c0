"""Fixtures of the Redis tests: a client of the shared store (each test runs on a single
Redis and on a three-master cluster) and lanes to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from streams.cluster.client import StoreClient, ready_client, store_client
from streams.cluster.lanes import StoreLanes


@pytest.fixture
async def client(any_redis_url: str) -> AsyncIterator[StoreClient]:
    """A client of the shared Redis, then of the shared cluster (the test runs on both)."""
    made = store_client(any_redis_url, max_connections=20, timeout=2.0)
    await ready_client(made)
    yield made
    await made.aclose()


@pytest.fixture
def lanes(client: StoreClient) -> Iterator[StoreLanes]:
    """Lanes to the client's store (streams.cluster.lanes), closed after the test."""
    made = StoreLanes(client)
    yield made
    made.close()
