"""The WebSocket channel: multiplexed runs, client-side tools, and bad commands."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import pytest
import websockets

from tests.support import agent_spec, running_gateway, ws_recv, ws_until

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")


async def test_three_runs_multiplexed_on_one_socket_each_arrive_complete_and_in_order() -> None:
    prompts = ["count down from 4", "what is 6 * 7", "hello"]
    tools = [["countdown"], ["calculator"], []]
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            for index, (prompt, names) in enumerate(zip(prompts, tools, strict=True)):
                await ws.send(
                    json.dumps({"type": "run.start", "id": index, "run": agent_spec(prompt, names)})
                )
            by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
            acks: dict[int, str] = {}
            finished = 0
            arrival: list[str] = []
            while finished < 3:
                message = await ws_recv(ws)
                if message["type"] == "ack":
                    acks[message["id"]] = message["run_id"]
                    continue
                by_run[message["run_id"]].append(message)
                arrival.append(message["run_id"])
                finished += message["type"] in ("run.completed", "run.failed", "run.cancelled")
    assert sorted(acks) == [0, 1, 2]
    assert set(by_run) == set(acks.values())
    for events in by_run.values():
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "run.completed"
    assert "42" in by_run[acks[1]][-1]["output"]
    switches = sum(1 for a, b in itertools.pairwise(arrival) if a != b)
    assert switches > 3, "the runs' events should be interleaved on the socket"


async def test_a_client_side_tool_round_trip() -> None:
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
    }
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            run_id = (await ws_recv(ws))["run_id"]
            request = (await ws_until(ws, "client_tool.requested"))[-1]
            assert request["name"] == "get_location"
            assert request["arguments"] == {}
            await ws.send(
                json.dumps(
                    {
                        "type": "tool.result",
                        "id": 2,
                        "run_id": run_id,
                        "call_id": request["call_id"],
                        "output": {"city": "Lisbon"},
                    }
                )
            )
            rest = await ws_until(ws, "run.completed")
    assert rest[0] == {
        "type": "ack",
        "id": 2,
        "command": "tool.result",
        "run_id": run_id,
        "call_id": request["call_id"],
    }
    completed = next(m for m in rest if m["type"] == "tool.completed")
    assert completed["output"] == {"city": "Lisbon"}
    assert "Lisbon" in rest[-1]["output"]


async def test_a_client_tool_that_never_answers_fails_after_its_timeout_and_the_run_goes_on() -> (
    None
):
    spec = {
        "model": "demo",
        "messages": [{"role": "user", "content": "call get_location"}],
        "client_tools": [{"name": "get_location"}],
    }
    with running_gateway(client_tool_timeout=0.2) as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            messages = await ws_until(ws, "run.completed")
    failed = next(m for m in messages if m["type"] == "tool.failed")
    assert failed["error"]["code"] == "tool_timeout"
    assert "no result within 0.2s" in failed["error"]["message"]


async def test_subscribe_with_after_resumes_a_run_on_another_socket() -> None:
    spec = agent_spec("count down from 6", ["countdown"], on_disconnect="continue")
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            run_id = (await ws_recv(ws))["run_id"]
            seen = await ws_until(ws, "tool.delta")
        await gateway.wait_run(run_id)
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            after = seen[-1]["seq"]
            await ws.send(
                json.dumps({"type": "subscribe", "id": 9, "run_id": run_id, "after": after})
            )
            ack = await ws_recv(ws)
            rest = await ws_until(ws, "run.completed")
            await ws.send(json.dumps({"type": "subscribe", "id": 10, "run_id": run_id}))
            everything = await ws_until(ws, "run.completed")
    assert ack == {"type": "ack", "id": 9, "command": "subscribe", "run_id": run_id, "after": after}
    assert everything[0]["type"] == "ack"
    assert seen + rest == everything[1:]


BAD_COMMANDS = [
    ("{not json", None, "invalid_json"),
    ("[1, 2]", None, "invalid_command"),
    ('{"type": "launch", "id": 1}', 1, "unknown_command"),
    ('{"id": "x"}', "x", "unknown_command"),
    ('{"type": "run.start", "id": 2}', 2, "invalid_command"),
    ('{"type": "run.start", "id": 3, "run": {"model": "demo"}}', 3, "invalid_command"),
    (
        '{"type": "run.start", "id": 4, "run": {"model": "nope", "messages": '
        '[{"role": "user", "content": "hi"}]}}',
        4,
        "invalid_request",
    ),
    (
        '{"type": "run.start", "id": 5, "run": {"model": "demo", "tools": ["nope"], '
        '"messages": [{"role": "user", "content": "hi"}]}}',
        5,
        "invalid_request",
    ),
    ('{"type": "subscribe", "id": 6, "run_id": "run_missing"}', 6, "not_found"),
    ('{"type": "subscribe", "id": 7, "run_id": 12}', 7, "invalid_command"),
    ('{"type": "subscribe", "id": 8, "run_id": "r", "after": -1}', 8, "invalid_command"),
    ('{"type": "run.cancel", "id": 9, "run_id": "run_missing"}', 9, "not_found"),
    ('{"type": "unsubscribe", "id": 10, "run_id": "run_missing"}', 10, "invalid_request"),
    ('{"type": "tool.result", "id": 11, "run_id": "run_missing", "call_id": "c"}', 11, "not_found"),
    ('{"type": "ping", "id": 12, "extra": true}', 12, "invalid_command"),
    (b"\x00binary", None, "binary_not_supported"),
]


@pytest.mark.parametrize(("message", "command_id", "code"), BAD_COMMANDS)
async def test_a_bad_command_gets_an_error_and_the_session_goes_on(
    message: str | bytes, command_id: object, code: str
) -> None:
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(message)
            error = await ws_recv(ws)
            await ws.send(json.dumps({"type": "ping", "id": "after"}))
            pong = await ws_recv(ws)
    assert error["type"] == "error"
    assert error["id"] == command_id
    assert error["code"] == code
    assert error["message"]
    assert pong == {"type": "ack", "id": "after", "command": "ping"}


async def test_many_bad_commands_on_one_socket_then_a_run_still_works() -> None:
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            for message, _, _ in BAD_COMMANDS:
                await ws.send(message)
            errors = [await ws_recv(ws) for _ in BAD_COMMANDS]
            await ws.send(
                json.dumps({"type": "run.start", "id": "ok", "run": agent_spec("hello", [])})
            )
            messages = await ws_until(ws, "run.completed")
    assert [e["code"] for e in errors] == [code for _, _, code in BAD_COMMANDS]
    assert messages[0]["type"] == "ack"


async def test_tool_results_are_refused_from_a_socket_not_following_the_run() -> None:
    spec = {
        "model": "demo",
        "messages": [{"role": "user", "content": "call get_location"}],
        "client_tools": [{"name": "get_location"}],
    }
    with running_gateway() as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as owner:
            await owner.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            run_id = (await ws_recv(owner))["run_id"]
            request = (await ws_until(owner, "client_tool.requested"))[-1]
            async with websockets.connect(gateway.ws_url, open_timeout=5) as stranger:
                await stranger.send(
                    json.dumps(
                        {
                            "type": "tool.result",
                            "id": 1,
                            "run_id": run_id,
                            "call_id": request["call_id"],
                            "output": "spoofed",
                        }
                    )
                )
                error = await ws_recv(stranger)
            await owner.send(
                json.dumps(
                    {
                        "type": "tool.result",
                        "id": 2,
                        "run_id": run_id,
                        "call_id": request["call_id"],
                        "output": "real",
                    }
                )
            )
            rest = await ws_until(owner, "run.completed")
    assert error["code"] == "invalid_request"
    assert next(m for m in rest if m["type"] == "tool.completed")["output"] == "real"


async def test_past_the_per_connection_run_limit_run_start_gets_an_error() -> None:
    spec = agent_spec("sleep 5 seconds", ["sleep"])
    with running_gateway(max_runs_per_connection=1) as gateway:
        async with websockets.connect(gateway.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "run.start", "id": 1, "run": spec}))
            first = await ws_recv(ws)
            await ws.send(json.dumps({"type": "run.start", "id": 2, "run": spec}))
            refused = next(m for m in await ws_until(ws, "error") if m["type"] == "error")
            await ws.send(json.dumps({"type": "ping", "id": 3}))
            messages = await ws_until(ws, "ack")
    assert first["type"] == "ack"
    assert refused["id"] == 2
    assert refused["code"] == "limit_exceeded"
    assert messages[-1] == {"type": "ack", "id": 3, "command": "ping"}
