"""Fixtures of the reliability tests: one real gateway on 127.0.0.1 per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RunningGateway, running_gateway


@pytest.fixture(scope="module")
def module_gateway() -> Iterator[RunningGateway]:
    """A gateway shared by a module's tests (it must come out of each test as it went in).
    The run quota is out of the way: these tests start many runs on purpose."""
    with running_gateway(runs_per_key_per_minute=100_000.0) as gateway:
        yield gateway
