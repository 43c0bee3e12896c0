"""Human approval of tool calls with two gateway instances (two threads of this test) sharing
one real redis-server: a call waiting on instance a is seen on b (its snapshot's
``pending_approvals``) and answered there, with the same answers as on a itself: 200 once,
409 for a second answer (of two at once, exactly one wins), 404 for a call that does not
wait, 400 for edited arguments that do not fit (the call still waits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from tests.gateway_process import eventually
from tests.support import SSE, RunningGateway, agent_spec, collect, running_gateway, sse_events

WAITS = agent_spec("What time is it?", ["clock"], approval="all")


@contextmanager
def two_instances(redis_url: str) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    with (
        running_gateway(redis_url=redis_url, instance_id="a") as a,
        running_gateway(redis_url=redis_url, instance_id="b") as b,
    ):
        yield a, b


@asynccontextmanager
async def clients(
    a: RunningGateway, b: RunningGateway
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=10) as on_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
    ):
        yield on_a, on_b


async def start(client: httpx.AsyncClient, spec: dict[str, Any] = WAITS) -> str:
    answer = await client.post("/v1/runs", json=spec)
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


async def waiting_call(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The call the run waits on, once ``client``'s instance shows it in the snapshot."""

    async def pending() -> dict[str, Any] | None:
        found = (await client.get(f"/v1/runs/{run_id}")).json()["pending_approvals"]
        return found[0] if found else None

    return await eventually(pending, timeout=10, what="the call waiting for approval")


async def answer(
    client: httpx.AsyncClient, run_id: str, call_id: str, decision: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/runs/{run_id}/approvals/{call_id}", json={"decision": decision, **extra}
    )


async def read_all(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            assert response.status_code == 200
            return await collect(response)


async def read_until(client: httpx.AsyncClient, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The run's events up to the first of type ``kind``; then the reader leaves."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            async for event in sse_events(response):
                events.append(event)
                if event["type"] == kind:
                    break
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


FRAME = ("seq", "run_id", "type", "ts", "producer")


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The payloads (the fields but the envelope's) of the events of type ``kind``."""
    return [
        {k: v for k, v in event.items() if k not in FRAME}
        for event in events
        if event["type"] == kind
    ]


async def test_an_answer_on_another_instance_reaches_readers_on_both_and_a_second_is_a_409(
    any_redis_url: str,
) -> None:
    with two_instances(any_redis_url) as (a, b):
        async with clients(a, b) as (on_a, on_b):
            run_id = await start(on_a)
            reader_a = asyncio.create_task(read_all(on_a, run_id))
            reader_b = asyncio.create_task(read_all(on_b, run_id))
            waiting = await waiting_call(on_b, run_id)
            approved = await answer(on_b, run_id, waiting["call_id"], "approve", reason="ok")
            from_a, from_b = await reader_a, await reader_b
            again_on_a = await answer(on_a, run_id, waiting["call_id"], "approve")
            again_on_b = await answer(on_b, run_id, waiting["call_id"], "deny")
            after = (await on_b.get(f"/v1/runs/{run_id}")).json()
            ready_b = (await on_b.get("/readyz")).json()
    assert waiting["name"] == "clock"
    assert waiting["arguments"] == {}
    assert approved.status_code == 200, approved.text
    assert approved.json() == {
        "run_id": run_id,
        "call_id": waiting["call_id"],
        "decision": "approve",
    }
    assert from_a == from_b
    kinds = types(from_a)
    assert kinds.index("tool.approval_requested") < kinds.index("tool.approved")
    assert kinds.index("tool.approved") < kinds.index("tool.started")
    assert kinds[-1] == "run.completed"
    assert of_type(from_a, "tool.approved") == [
        {"call_id": waiting["call_id"], "by": "anonymous", "reason": "ok"}
    ]
    for second in (again_on_a, again_on_b):
        assert second.status_code == 409, second.text
        assert second.json()["error"]["code"] == "approval_answered"
    assert after["status"] == "completed"
    assert after["pending_approvals"] == []
    assert ready_b["approvals_forwarded"] == 2  # the approval and the second answer on b


async def test_two_instances_answering_at_once_exactly_one_wins(redis_url: str) -> None:
    with two_instances(redis_url) as (a, b):
        async with clients(a, b) as (on_a, on_b):
            run_id = await start(on_a)
            call_id = (await waiting_call(on_b, run_id))["call_id"]
            answers = await asyncio.gather(
                answer(on_a, run_id, call_id, "approve"), answer(on_b, run_id, call_id, "deny")
            )
            events = await read_all(on_b, run_id)
    assert sorted(r.status_code for r in answers) == [200, 409]
    won = "approved" if answers[0].status_code == 200 else "denied"
    assert types(events).count(f"tool.{won}") == 1
    assert "tool.approved" not in types(events) or "tool.denied" not in types(events)
    assert types(events)[-1] == "run.completed"


async def test_edited_arguments_that_do_not_fit_are_a_400_and_the_call_still_waits(
    redis_url: str,
) -> None:
    with two_instances(redis_url) as (a, b):
        async with clients(a, b) as (on_a, on_b):
            run_id = await start(on_a)
            call_id = (await waiting_call(on_b, run_id))["call_id"]
            unfit = await answer(
                on_b, run_id, call_id, "approve", arguments={"utc_offset_hours": 99}
            )
            still = (await on_b.get(f"/v1/runs/{run_id}")).json()
            approved = await answer(
                on_b, run_id, call_id, "approve", arguments={"utc_offset_hours": 2}
            )
            events = await read_all(on_b, run_id)
    assert unfit.status_code == 400, unfit.text
    assert unfit.json()["error"]["code"] == "invalid_request"
    assert unfit.json()["error"]["message"] == "arguments.utc_offset_hours must be at most 14"
    assert still["status"] == "running"
    assert [p["call_id"] for p in still["pending_approvals"]] == [call_id]
    assert approved.status_code == 200, approved.text
    assert of_type(events, "tool.approved") == [
        {
            "call_id": call_id,
            "by": "anonymous",
            "reason": None,
            "arguments": {"utc_offset_hours": 2},
        }
    ]
    assert of_type(events, "tool.started")[0]["arguments"] == {"utc_offset_hours": 2}
    assert of_type(events, "tool.completed")[0]["output"]["utc_offset_hours"] == 2
    assert types(events)[-1] == "run.completed"


async def test_a_deny_on_another_instance_skips_the_tool_and_the_run_carries_on(
    redis_url: str,
) -> None:
    with two_instances(redis_url) as (a, b):
        async with clients(a, b) as (on_a, on_b):
            run_id = await start(on_a)
            call_id = (await waiting_call(on_b, run_id))["call_id"]
            denied = await answer(on_b, run_id, call_id, "deny", reason="not now")
            events = await read_all(on_a, run_id)
    assert denied.status_code == 200, denied.text
    assert denied.json()["decision"] == "deny"
    assert of_type(events, "tool.denied") == [
        {"call_id": call_id, "by": "anonymous", "reason": "not now"}
    ]
    assert "tool.started" not in types(events)
    assert types(events)[-1] == "run.completed"


async def test_a_call_that_does_not_wait_is_a_404_on_another_instance(redis_url: str) -> None:
    with two_instances(redis_url) as (a, b):
        async with clients(a, b) as (on_a, on_b):
            run_id = await start(on_a)
            call_id = (await waiting_call(on_b, run_id))["call_id"]
            unknown_call = await answer(on_b, run_id, "call_nope", "approve")
            unknown_run = await answer(on_b, "run_nope", call_id, "approve")
            still = (await on_b.get(f"/v1/runs/{run_id}")).json()
            await answer(on_b, run_id, call_id, "approve")
            await read_all(on_b, run_id)
    for missing in (unknown_call, unknown_run):
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "not_found"
    assert [p["call_id"] for p in still["pending_approvals"]] == [call_id]


async def test_a_run_waiting_for_approval_outlives_its_readers_leaving_on_either_instance(
    redis_url: str,
) -> None:
    """Started streamed on a (a run that is cancelled when its last reader leaves), read on
    b: once it waits for a person, neither reader leaving stops it, and b answers later."""
    with two_instances(redis_url) as (a, b):
        async with clients(a, b) as (on_a, on_b):
            async with asyncio.timeout(10):
                async with on_a.stream("POST", "/v1/runs", json=WAITS, headers=SSE) as response:
                    async for event in sse_events(response):
                        if event["type"] == "tool.approval_requested":
                            run_id, call_id = event["run_id"], event["call_id"]
                            break
            seen_on_b = await read_until(on_b, run_id, "tool.approval_requested")
            left = (await on_b.get(f"/v1/runs/{run_id}")).json()
            local = (await on_a.get(f"/v1/runs/{run_id}")).json()
            approved = await answer(on_b, run_id, call_id, "approve")
            events = await read_all(on_b, run_id)
    assert seen_on_b[-1]["call_id"] == call_id
    assert left["status"] == "running"
    assert left["on_disconnect"] == "continue"
    assert [p["call_id"] for p in left["pending_approvals"]] == [call_id]
    assert local["readers"] == 0  # a's reader left; b's are not counted on a
    assert local["status"] == "running"
    assert approved.status_code == 200, approved.text
    assert types(events)[-1] == "run.completed"


async def test_an_answer_for_a_run_whose_instance_is_gone_is_a_404(any_redis_url: str) -> None:
    with running_gateway(redis_url=any_redis_url, instance_id="b") as b:
        async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b:
            with running_gateway(redis_url=any_redis_url, instance_id="a") as a:
                async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as on_a:
                    run_id = await start(on_a)
                    call_id = (await waiting_call(on_b, run_id))["call_id"]
            gone = await answer(on_b, run_id, call_id, "approve")
            after = (await on_b.get(f"/v1/runs/{run_id}")).json()
    assert gone.status_code == 404, gone.text
    assert gone.json()["error"]["code"] == "not_found"
    assert gone.json()["error"]["message"] == (
        f"run {run_id} has ended: no call {call_id!r} waits for approval"
    )
    assert after["status"] == "cancelled"  # a's shutdown cancelled it
    assert after["pending_approvals"] == []
