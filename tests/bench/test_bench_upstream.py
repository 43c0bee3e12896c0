"""The bench upstream playing several routes at once: words in the model id, counted per
route (the failover scenario's primary and secondary)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from bench import client as c
from bench import procs
from bench import scenarios as s


@pytest.fixture(scope="module")
def upstream() -> Iterator[procs.Proc]:
    with procs.start_upstream() as proc:
        yield proc


async def counts(upstream: procs.Proc, route: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream.port}") as http:
        answer = await http.get(f"/routes/{route}")
        answer.raise_for_status()
        found: dict[str, int] = answer.json()
        return found


async def test_a_route_s_words_in_the_model_id_delay_its_first_token(
    upstream: procs.Proc,
) -> None:
    body = c.chat_body("n=2", "bench route=quick first=0.2")
    started, _, count, first = await c.stream_once(upstream.port, s.CHAT, body)
    assert count == 2
    assert first is not None
    assert first - started >= 0.2
    assert await counts(upstream, "quick") == {"started": 1, "finished": 1, "left": 0, "open": 0}


async def test_a_client_that_leaves_before_the_first_token_is_counted_as_left_at_once(
    upstream: procs.Proc,
) -> None:
    client = await c.connect(upstream.port)
    client.send("POST", s.CHAT, c.chat_body("n=1", "bench route=slow first=30"))
    # Started: the head comes before the pause.
    while not client.headers_done:  # noqa: ASYNC110 (the protocol has no event for it)
        await asyncio.sleep(0.005)
    assert (await counts(upstream, "slow"))["open"] == 1
    client.close()
    settled = await s.route_requests(upstream, "slow", settle=5)
    assert settled == {"started": 1, "finished": 0, "left": 1, "open": 0}


async def test_an_unknown_route_has_no_requests(upstream: procs.Proc) -> None:
    assert await counts(upstream, "never") == {"started": 0, "finished": 0, "left": 0, "open": 0}
