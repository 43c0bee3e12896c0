"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from streams.builtin.demo import DemoModel
from streams.builtin.tools import builtin_tools
from streams.log import Retention
from streams.models import ModelRegistry
from streams.runs.limits import RunLimits
from streams.runs.manager import RunManager

# Finished runs expire this soon (seconds), so a test can watch the sweeper do its work.
RUN_TTL = 0.05


@pytest.fixture
async def manager() -> AsyncIterator[RunManager]:
    """A running engine with the demo model and the built-in tools, none of which waits
    between tokens or ticks."""
    models = ModelRegistry()
    models.register(DemoModel(token_delay=0))
    limits = RunLimits(retention=Retention(ttl=RUN_TTL))
    async with RunManager(
        models=models, tools=builtin_tools(countdown_interval=0), limits=limits
    ) as running:
        yield running
