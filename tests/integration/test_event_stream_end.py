"""A resume after a finished run's terminal event is a 204, which ends a browser's
EventSource. To EventSource the end of a response is a dropped connection: it reconnects
with ``Last-Event-ID`` = the terminal event's seq, and a 200 (with the end again) would have
it do so every few seconds until its token expired. WHATWG HTML: a 204 ends it for good.

On the in-memory store and on Redis (``backend``); a run of another instance is in
``tests/redis/test_instances.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.auth import hash_key
from tests.support import RunningGateway, agent_spec, collect, running_gateway

pytestmark = pytest.mark.usefixtures("backend")

COUNTDOWN = agent_spec("count down from 3", ["countdown"], on_disconnect="continue")
LONG = {
    "parallel": [{"tool": "countdown", "arguments": {"start": 1000, "interval": 0.05}}],
    "on_disconnect": "continue",
}
FORMATS = ["native", "ag-ui"]


async def finished_run(gateway: RunningGateway, client: httpx.AsyncClient) -> tuple[str, int]:
    """A run that has ended, and its terminal event's seq."""
    run_id = (await client.post("/v1/runs", json=COUNTDOWN)).json()["run_id"]
    snapshot = await gateway.wait_run(run_id)
    assert snapshot["status"] == "completed"
    terminal: int = snapshot["last_seq"]
    return run_id, terminal


def events_url(run_id: str, format: str, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"format": format, **params}.items())
    return f"/v1/runs/{run_id}/events?{query}"


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("past", [0, 1, 1000], ids=["at-the-end", "one-past", "far-past"])
async def test_a_resume_at_or_past_a_finished_run_s_terminal_event_is_a_204_without_a_body(
    format: str, past: int
) -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id, terminal = await finished_run(gateway, client)
            cursor = str(terminal + past)
            by_header = await client.get(
                events_url(run_id, format), headers={"last-event-id": cursor}
            )
            by_query = await client.get(events_url(run_id, format, after=cursor))
    for answer in (by_header, by_query):
        assert answer.status_code == 204
        assert answer.content == b""
        assert "content-length" not in answer.headers  # RFC 9110: none on a 204
        assert answer.headers["x-run-id"] == run_id
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("format", FORMATS)
async def test_a_resume_before_the_terminal_event_gets_the_rest_with_200(format: str) -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id, terminal = await finished_run(gateway, client)
            headers = {"last-event-id": str(terminal - 1)}
            async with client.stream(
                "GET", events_url(run_id, format), headers=headers
            ) as response:
                status = response.status_code
                body = (await response.aread()).decode()
    assert status == 200
    assert f"id: {terminal}\n" in body
    assert f"id: {terminal - 1}\n" not in body
    last_frame = body.rstrip("\n").rsplit("\n\n", 1)[-1]
    assert last_frame.startswith(f"id: {terminal}\n")
    assert ("RUN_FINISHED" if format == "ag-ui" else "run.completed") in last_frame


async def test_a_resume_of_a_finished_run_from_the_start_still_gets_every_event() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id, terminal = await finished_run(gateway, client)
            async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
                events = await collect(response)
    assert [e["seq"] for e in events] == list(range(1, terminal + 1))


async def test_a_resume_at_the_last_event_of_a_running_run_waits_for_what_comes_next() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id = (await client.post("/v1/runs", json=LONG)).json()["run_id"]
            cursor = (await client.get(f"/v1/runs/{run_id}")).json()["last_seq"]
            headers = {"last-event-id": str(cursor)}
            async with client.stream(
                "GET", f"/v1/runs/{run_id}/events", headers=headers
            ) as response:
                status = response.status_code
                await client.post(f"/v1/runs/{run_id}/cancel")
                async with asyncio.timeout(10):
                    events = await collect(response)
    assert status == 200
    assert events[0]["seq"] == cursor + 1
    assert events[-1]["type"] == "run.cancelled"


async def test_a_resume_of_an_unknown_run_or_with_a_bad_cursor_is_still_an_error() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id, terminal = await finished_run(gateway, client)
            unknown = await client.get(
                "/v1/runs/run_nope/events", headers={"last-event-id": str(terminal)}
            )
            negative = await client.get(f"/v1/runs/{run_id}/events?after=-1")
    assert unknown.status_code == 404
    assert negative.status_code == 400


async def test_with_keys_only_a_valid_key_or_token_gets_the_204() -> None:
    key = "key-for-alice"
    with running_gateway(api_keys={"alice": hash_key(key)}) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            started = (
                await client.post(
                    "/v1/runs", json=COUNTDOWN, headers={"authorization": f"Bearer {key}"}
                )
            ).json()
            terminal = (await gateway.wait_run(started["run_id"]))["last_seq"]
            end = {"last-event-id": str(terminal)}
            url = started["events_url"]
            anonymous = await client.get(url, headers=end)
            wrong_token = await client.get(f"{url}?token=x{started['token']}", headers=end)
            with_token = await client.get(f"{url}?token={started['token']}", headers=end)
    assert anonymous.status_code == 401
    assert wrong_token.status_code == 401
    assert with_token.status_code == 204
