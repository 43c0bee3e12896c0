"""The suite runs on the gateway's production loop (uvloop), and the unit and integration
tests on asyncio's own loop too."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from tests.support import running_gateway


def _kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if isinstance(loop, uvloop.Loop) else "asyncio"


async def test_each_test_runs_on_the_loop_its_id_names(request: pytest.FixtureRequest) -> None:
    loop_id = request.node.callspec.id
    assert _kind(asyncio.get_running_loop()) == loop_id


async def test_a_test_gateway_serves_on_the_loop_of_its_test() -> None:
    with running_gateway() as gateway:
        assert _kind(gateway.loop) == _kind(asyncio.get_running_loop())


def test_a_gateway_made_outside_a_loop_serves_on_uvloop() -> None:
    with running_gateway() as gateway:
        assert _kind(gateway.loop) == "uvloop"
