"""Fixtures of the failover suite: two scripted upstreams, one per route of the group."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.upstream_server import UpstreamServer


@pytest.fixture
def a() -> Iterator[UpstreamServer]:
    """The upstream of route ``a``, the group's first."""
    with UpstreamServer() as server:
        yield server


@pytest.fixture
def b() -> Iterator[UpstreamServer]:
    """The upstream of route ``b``, the group's second."""
    with UpstreamServer() as server:
        yield server
