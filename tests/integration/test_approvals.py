"""Human approval of tool calls, end to end with real clients: a run waits for a person
(``tool.approval_requested``), without needing a reader, until an answer over HTTP or the
WebSocket (``tool.approved`` / ``tool.denied``), its timeout or a cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

from tests.gateway_process import api_keys
from tests.support import (
    SSE,
    RunningGateway,
    agent_spec,
    running_gateway,
    sse_events,
    ws_recv,
    ws_until,
)

CLOCK = agent_spec("What time is it?", ["clock"], approval="all")
COUNTDOWN = agent_spec("count down from 3", ["countdown"], approval="all")
TERMINAL = ("run.completed", "run.failed", "run.cancelled")


def client(gateway: RunningGateway, key: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=gateway.base_url, headers=headers, timeout=10)


async def until(events: AsyncIterator[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Events up to and including the first of type ``kind``."""
    seen = []
    async for event in events:
        seen.append(event)
        if event["type"] == kind:
            return seen
    raise AssertionError(f"the stream ended before {kind}: {[e['type'] for e in seen]}")


async def start_detached(http: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    answer = await http.post("/v1/runs", json={**spec, "on_disconnect": "continue"})
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


async def wait_pending(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run's first call waiting for approval, read from the start of its events."""
    headers = {**SSE, "last-event-id": "0"}
    async with http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        events = await until(sse_events(response), "tool.approval_requested")
    return events[-1]


async def read_all(http: httpx.AsyncClient, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    headers = {**SSE, "last-event-id": str(after)}
    async with http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        return [event async for event in sse_events(response)]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def test_approved_over_http_while_an_sse_stream_reads_the_run() -> None:
    with running_gateway() as gateway:
        async with client(gateway) as reader, client(gateway) as answerer:
            async with reader.stream("POST", "/v1/runs", json=CLOCK, headers=SSE) as response:
                events = sse_events(response)
                before = await until(events, "tool.approval_requested")
                request = before[-1]
                assert set(request) >= {"call_id", "name", "arguments", "expires_at"}
                assert request["name"] == "clock"
                assert request["arguments"] == {}
                assert "tool.started" not in types(before)
                assert types(before).index("tool_call.completed") < len(before) - 1
                run_id = request["run_id"]
                snapshot = (await answerer.get(f"/v1/runs/{run_id}")).json()
                assert snapshot["pending_approvals"] == [
                    {k: request[k] for k in ("call_id", "name", "arguments", "expires_at")}
                ]
                answer = await answerer.post(
                    f"/v1/runs/{run_id}/approvals/{request['call_id']}",
                    json={"decision": "approve", "reason": "fine"},
                )
                assert answer.status_code == 200, answer.text
                assert answer.json() == {
                    "run_id": run_id,
                    "call_id": request["call_id"],
                    "decision": "approve",
                }
                after = [event async for event in events]
            snapshot = (await answerer.get(f"/v1/runs/{run_id}")).json()
    kinds = types(after)
    assert kinds[:2] == ["tool.approved", "tool.started"]
    assert kinds.index("tool.completed") < kinds.index("run.completed") == len(kinds) - 1
    approved = after[0]
    assert (approved["call_id"], approved["by"], approved["reason"]) == (
        request["call_id"],
        "anonymous",
        "fine",
    )
    assert "arguments" not in approved  # not edited
    assert snapshot["pending_approvals"] == []
    assert snapshot["status"] == "completed"


async def test_denied_the_model_reads_the_refusal_and_the_run_carries_on() -> None:
    with running_gateway() as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, CLOCK)
            request = await wait_pending(http, run_id)
            answer = await http.post(
                f"/v1/runs/{run_id}/approvals/{request['call_id']}",
                json={"decision": "deny", "reason": "not now"},
            )
            assert answer.status_code == 200, answer.text
            events = await read_all(http, run_id)
            metrics = (await http.get("/metrics")).text
    kinds = types(events)
    assert "tool.started" not in kinds and "tool.completed" not in kinds
    denied = events[kinds.index("tool.denied")]
    assert (denied["by"], denied["reason"]) == ("anonymous", "not now")
    assert kinds[-1] == "run.completed"
    assert "the user denied this tool call: not now" in events[-1]["output"]
    assert 'gateway_approvals_requested_total{tool="clock"} 1.0' in metrics
    assert 'gateway_approvals_answered_total{decision="deny",tool="clock"} 1.0' in metrics
    assert "gateway_approval_wait_seconds_count 1.0" in metrics


async def test_a_second_answer_is_a_409_and_an_unknown_call_a_404() -> None:
    with running_gateway() as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, CLOCK)
            call_id = (await wait_pending(http, run_id))["call_id"]
            url = f"/v1/runs/{run_id}/approvals/{call_id}"
            assert (await http.post(url, json={"decision": "approve"})).status_code == 200
            again = await http.post(url, json={"decision": "deny"})
            unknown = await http.post(
                f"/v1/runs/{run_id}/approvals/call_99", json={"decision": "approve"}
            )
            bad = await http.post(url, json={"decision": "maybe"})
            events = await read_all(http, run_id)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "approval_answered"
    assert unknown.status_code == 404, unknown.text
    assert bad.status_code in (400, 422) and "error" in bad.json()
    assert types(events).count("tool.approved") == 1
    assert "tool.denied" not in types(events)


async def test_edited_arguments_that_do_not_fit_are_a_400_and_the_call_still_waits() -> None:
    with running_gateway() as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, COUNTDOWN)
            request = await wait_pending(http, run_id)
            assert request["arguments"] == {"start": 3}
            url = f"/v1/runs/{run_id}/approvals/{request['call_id']}"
            wrong = await http.post(
                url, json={"decision": "approve", "arguments": {"start": "two"}}
            )
            assert wrong.status_code == 400, wrong.text
            assert "arguments.start must be integer" in wrong.json()["error"]["message"]
            missing = await http.post(url, json={"decision": "approve", "arguments": {}})
            assert missing.status_code == 400, missing.text
            assert "arguments.start is required" in missing.json()["error"]["message"]
            snapshot = (await http.get(f"/v1/runs/{run_id}")).json()
            assert [p["call_id"] for p in snapshot["pending_approvals"]] == [request["call_id"]]
            good = await http.post(url, json={"decision": "approve", "arguments": {"start": 2}})
            assert good.status_code == 200, good.text
            events = await read_all(http, run_id)
    by_type = {event["type"]: event for event in events}
    assert by_type["tool.approved"]["arguments"] == {"start": 2}
    assert by_type["tool.started"]["arguments"] == {"start": 2}
    assert by_type["tool.completed"]["output"]["counted_from"] == 2
    assert types(events)[-1] == "run.completed"


async def test_the_client_leaves_while_the_call_waits_and_comes_back_by_resume() -> None:
    spec = {**CLOCK, "on_disconnect": "cancel"}
    with running_gateway() as gateway:
        async with client(gateway) as http:
            async with http.stream("POST", "/v1/runs", json=spec, headers=SSE) as response:
                request = (await until(sse_events(response), "tool.approval_requested"))[-1]
            run_id = request["run_id"]
            run = gateway.state.manager.get_unchecked(run_id)
            await gateway.wait_on_server(lambda: run.readers == 0)
            snapshot = (await http.get(f"/v1/runs/{run_id}")).json()
            assert snapshot["status"] == "running", snapshot
            assert [p["call_id"] for p in snapshot["pending_approvals"]] == [request["call_id"]]
            # Back with Last-Event-ID: the pending request is in what the client gets.
            headers = {**SSE, "last-event-id": str(request["seq"] - 1)}
            url = f"/v1/runs/{run_id}/events"
            async with http.stream("GET", url, headers=headers) as resumed:
                events = sse_events(resumed)
                first = await anext(events)
                assert first == request
                answer = await http.post(
                    f"/v1/runs/{run_id}/approvals/{request['call_id']}",
                    json={"decision": "approve"},
                )
                assert answer.status_code == 200, answer.text
                rest = [event async for event in events]
    assert types(rest)[0] == "tool.approved"
    assert types(rest)[-1] == "run.completed"


async def test_unanswered_within_the_timeout_is_denied_by_timeout() -> None:
    with running_gateway(approval_timeout=0.2) as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, CLOCK)
            events = await read_all(http, run_id)
            metrics = (await http.get("/metrics")).text
    kinds = types(events)
    denied = events[kinds.index("tool.denied")]
    assert denied["by"] == "timeout"
    assert "tool.started" not in kinds
    assert kinds[-1] == "run.completed"
    assert 'gateway_approvals_expired_total{tool="clock"} 1.0' in metrics


async def test_unanswered_within_the_timeout_fails_the_call_when_so_configured() -> None:
    with running_gateway(approval_timeout=0.2, approval_on_timeout="fail") as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, CLOCK)
            events = await read_all(http, run_id)
    kinds = types(events)
    failed = events[kinds.index("tool.failed")]
    assert failed["error"]["code"] == "approval_expired"
    assert "tool.started" not in kinds and "tool.denied" not in kinds
    assert kinds[-1] in TERMINAL


async def test_a_cancel_while_the_call_waits_ends_the_run() -> None:
    with running_gateway() as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, CLOCK)
            await wait_pending(http, run_id)
            cancelled = await http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "no"})
            assert cancelled.status_code == 200, cancelled.text
            events = await read_all(http, run_id)
            snapshot = (await http.get(f"/v1/runs/{run_id}")).json()
    assert types(events)[-1] == "run.cancelled"
    assert "tool.started" not in types(events)
    assert snapshot["pending_approvals"] == []


async def test_only_the_owner_or_an_approver_key_may_answer() -> None:
    keys = api_keys("alice", "mallory", "boss")
    with running_gateway(api_keys=keys, approvers=["boss"]) as gateway:
        async with (
            client(gateway, "alice") as alice,
            client(gateway, "mallory") as mallory,
            client(gateway, "boss") as boss,
        ):
            first = await start_detached(alice, CLOCK)
            second = await start_detached(alice, CLOCK)
            calls = [(await wait_pending(alice, r))["call_id"] for r in (first, second)]
            url = f"/v1/runs/{first}/approvals/{calls[0]}"
            refused = await mallory.post(url, json={"decision": "approve"})
            assert refused.status_code == 404, refused.text
            assert refused.json()["error"]["code"] == "not_found"
            by_boss = await boss.post(url, json={"decision": "deny", "reason": "policy"})
            assert by_boss.status_code == 200, by_boss.text
            by_owner = await alice.post(
                f"/v1/runs/{second}/approvals/{calls[1]}", json={"decision": "approve"}
            )
            assert by_owner.status_code == 200, by_owner.text
            denied = await read_all(alice, first)
            approved = await read_all(alice, second)
    assert next(e for e in denied if e["type"] == "tool.denied")["by"] == "boss"
    assert next(e for e in approved if e["type"] == "tool.approved")["by"] == "alice"


async def test_the_config_gates_calls_per_tool_and_per_key_without_the_spec_asking() -> None:
    plain = agent_spec("What time is it?", ["clock"])
    keys = api_keys("gated", "free")
    by_tool = {"approval_tools": {"clock": "always"}}
    with running_gateway(**by_tool) as gateway:
        async with client(gateway) as http:
            run_id = await start_detached(http, plain)
            assert (await wait_pending(http, run_id))["name"] == "clock"
    with running_gateway(api_keys=keys, approval_keys={"gated": ["clock"]}) as gateway:
        async with client(gateway, "gated") as gated, client(gateway, "free") as free:
            waits = await start_detached(gated, plain)
            assert (await wait_pending(gated, waits))["name"] == "clock"
            runs = await start_detached(free, plain)
            events = await read_all(free, runs)
    assert "tool.approval_requested" not in types(events)
    assert types(events)[-1] == "run.completed"


# -- the WebSocket -------------------------------------------------------------------------


async def test_approve_and_deny_commands_over_the_websocket() -> None:
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            results = {}
            for number, command in enumerate(["tool.approve", "tool.deny"]):
                await ws.send(json.dumps({"type": "run.start", "id": number, "run": CLOCK}))
                run_id = (await ws_recv(ws))["run_id"]
                request = (await ws_until(ws, "tool.approval_requested"))[-1]
                answer = {
                    "type": command,
                    "id": f"a{number}",
                    "run_id": run_id,
                    "call_id": request["call_id"],
                    "reason": "by ws",
                }
                await ws.send(json.dumps(answer))
                messages = await ws_until(ws, "run.completed")
                results[command] = messages
    approve, deny = results["tool.approve"], results["tool.deny"]
    assert approve[0] == {
        "type": "ack",
        "id": "a0",
        "command": "tool.approve",
        "run_id": approve[1]["run_id"],
        "call_id": approve[1]["call_id"],
        "decision": "approve",
    }
    assert [m["type"] for m in approve[1:3]] == ["tool.approved", "tool.started"]
    assert approve[1]["reason"] == "by ws"
    assert deny[0]["command"] == "tool.deny" and deny[0]["decision"] == "deny"
    assert deny[1]["type"] == "tool.denied"
    assert "tool.started" not in [m["type"] for m in deny]
    assert "denied this tool call: by ws" in deny[-1]["output"]


async def test_bad_answers_over_the_websocket_are_error_events_and_the_session_goes_on() -> None:
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": COUNTDOWN}))
            run_id = (await ws_recv(ws))["run_id"]
            call_id = (await ws_until(ws, "tool.approval_requested"))[-1]["call_id"]
            answer = {"run_id": run_id, "call_id": call_id}
            bad = [
                {"type": "tool.approve", "id": 2, "run_id": run_id},  # no call_id
                {"type": "tool.deny", "id": 3, **answer, "arguments": {"start": 1}},
                {"type": "tool.approve", "id": 4, **answer, "reason": "x" * 1001},
                {"type": "tool.approve", "id": 5, **answer, "arguments": {"start": 0}},
                {"type": "tool.approve", "id": 6, "run_id": run_id, "call_id": "call_9"},
                {"type": "tool.approve", "id": 7, "run_id": "run_nope", "call_id": call_id},
            ]
            errors = []
            for command in bad:
                await ws.send(json.dumps(command))
                errors.append(await ws_recv(ws))
            await ws.send(json.dumps({"type": "tool.approve", "id": 8, **answer}))
            ack = await ws_recv(ws)
            await ws.send(json.dumps({"type": "tool.deny", "id": 9, **answer}))
            after = await ws_until(ws, "error")
            rest = await ws_until(ws, "run.completed")
    assert [(e["type"], e["id"], e["code"]) for e in errors] == [
        ("error", 2, "invalid_command"),
        ("error", 3, "invalid_command"),
        ("error", 4, "invalid_command"),
        ("error", 5, "invalid_request"),
        ("error", 6, "not_found"),
        ("error", 7, "not_found"),
    ]
    assert "arguments.start must be at least 1" in errors[3]["message"]
    assert (ack["type"], ack["id"], ack["decision"]) == ("ack", 8, "approve")
    second = after[-1]
    assert (second["id"], second["code"]) == (9, "approval_answered")
    kinds = [m["type"] for m in after[:-1] + rest]
    assert kinds.count("tool.approved") == 1 and kinds[-1] == "run.completed"


async def test_a_client_tool_waits_for_approval_before_it_is_requested() -> None:
    spec = {
        "model": "demo",
        "messages": [{"role": "user", "content": "please call get_location"}],
        "client_tools": [
            {
                "name": "get_location",
                "description": "Where the user is.",
                "parameters": {"type": "object", "properties": {}},
            }
        ],
        "approval": {"tools": ["get_location"]},
    }
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            run_id = (await ws_recv(ws))["run_id"]
            before = await ws_until(ws, "tool.approval_requested")
            call_id = before[-1]["call_id"]
            answer = {"type": "tool.approve", "id": 2, "run_id": run_id, "call_id": call_id}
            await ws.send(json.dumps(answer))
            between = await ws_until(ws, "client_tool.requested")
            result = {
                "type": "tool.result",
                "id": 3,
                "run_id": run_id,
                "call_id": call_id,
                "output": {"city": "Lisbon"},
            }
            await ws.send(json.dumps(result))
            rest = await ws_until(ws, "run.completed")
            async with client(gateway) as http:
                metrics = (await http.get("/metrics")).text
    assert "client_tool.requested" not in [m["type"] for m in before]
    assert next(m["type"] for m in between if m["type"] != "ack") == "tool.approved"
    assert rest[-1]["type"] == "run.completed"
    assert 'gateway_approvals_requested_total{tool="client"} 1.0' in metrics


async def test_over_the_websocket_only_the_owner_or_an_approver_key_may_answer() -> None:
    keys = api_keys("alice", "mallory", "boss")
    with running_gateway(api_keys=keys, approvers=["boss"]) as gateway:
        async with client(gateway, "alice") as alice:
            run_id = await start_detached(alice, CLOCK)
            call_id = (await wait_pending(alice, run_id))["call_id"]
            answer = {"type": "tool.approve", "run_id": run_id, "call_id": call_id}
            for key, expected in (("mallory", "not_found"), ("boss", "ack")):
                headers = {"authorization": f"Bearer {key}"}
                async with websockets.connect(
                    gateway.ws_url, open_timeout=5, additional_headers=headers
                ) as ws:
                    await ws.send(json.dumps({**answer, "id": key}))
                    reply = await ws_recv(ws)
                    assert (reply["id"], reply.get("code", reply["type"])) == (key, expected)
                    await ws.send(json.dumps({"type": "ping", "id": "p"}))
                    assert (await ws_recv(ws))["command"] == "ping"  # the session goes on
            events = await read_all(alice, run_id)
    assert next(e for e in events if e["type"] == "tool.approved")["by"] == "boss"
