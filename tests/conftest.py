from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

from tests.redis_server import RedisClusterServers, RedisServer
from tests.support import SHARED_STORE
from tests.upstream_server import UpstreamServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The loops a test runs on. The gateway runs on uvloop, so every test does; the unit and
# integration tests run on asyncio's own loop too, where a library may behave otherwise
# (uvloop's call_at, for one, returns a plain Handle for a time already past).
PRODUCTION_LOOP: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop
}
BOTH_LOOPS: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    **PRODUCTION_LOOP,
    "asyncio": asyncio.new_event_loop,
}
ON_BOTH_LOOPS = frozenset({"unit", "integration"})
TESTS = Path(__file__).resolve().parent


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop for every async test, and asyncio's loop too under tests/unit and
    tests/integration (the test id says which: ``[uvloop]``, ``[asyncio]``), but for tests
    marked ``production_loop`` (a client of their own process: Node's)."""
    suite = item.path.relative_to(TESTS).parts[0]
    if suite not in ON_BOTH_LOOPS or item.get_closest_marker("production_loop") is not None:
        return PRODUCTION_LOOP
    return BOTH_LOOPS


def require_binary(name: str, install_hint: str) -> str:
    """The path of a system binary a test needs: missing in CI is a failure, elsewhere a skip
    that says how to install it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    """Our scriptable OpenAI-compatible upstream on 127.0.0.1, for one test."""
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on 127.0.0.1 shared by the session's tests (use ``redis_url``)."""
    executable = require_binary("redis-server", "apt-get install redis-server")
    with RedisServer(executable) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis server's URL, emptied first, so no test sees another's keys."""
    if not redis_server.running:  # a test stopped the shared server: bring it back
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One real three-master Redis Cluster on 127.0.0.1 shared by the session's tests (use
    ``redis_cluster_url``)."""
    executable = require_binary("redis-server", "apt-get install redis-server")
    cli = require_binary("redis-cli", "apt-get install redis-tools")
    with RedisClusterServers(executable, cli) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The shared cluster's ``redis+cluster://`` URL (two seed nodes), emptied first."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(params=["redis", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """Runs the test twice: on a single Redis (``redis_url``) and on a three-master Redis
    Cluster (``redis_cluster_url``); the test id says which (``[redis]``, ``[cluster]``)."""
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop, kill, pause and restart."""
    executable = require_binary("redis-server", "apt-get install redis-server")
    with RedisServer(executable) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test twice: on the in-memory default, and with runs in a real Redis (the
    core suite, which asks for this fixture, holds on both backends)."""
    if request.param == "memory":
        yield "memory"
        return
    url: str = request.getfixturevalue("redis_url")
    token = SHARED_STORE.set(url)
    try:
        yield "redis"
    finally:
        SHARED_STORE.reset(token)


@pytest.fixture(scope="module", params=["memory", "redis"])
def module_store(request: pytest.FixtureRequest) -> str:
    """The ``backend`` split for a module-scoped gateway: its settings for the in-memory
    default (none) or for a real Redis (``redis_url``)."""
    if request.param == "memory":
        return ""
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    return server.url
