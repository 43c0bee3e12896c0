"""The AG-UI face over real HTTP: ``POST /v1/ag-ui`` and ``GET /v1/runs/{id}/events?format=ag-ui``
on a real gateway, read with httpx; every event is validated with the ``ag-ui-protocol``
package's models."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ag_ui.core import Event as AGUIEventUnion
from ag_ui.core import RunAgentInput
from pydantic import TypeAdapter

from tests.support import RunningGateway, SSEFrame, running_gateway, sse_frames

# The core suite: every test here runs on the in-memory store and on Redis.
pytestmark = pytest.mark.usefixtures("backend")

AGUI_EVENT: TypeAdapter[Any] = TypeAdapter(AGUIEventUnion)
SSE = {"accept": "text/event-stream"}


def agui_input(prompt: str, **fields: Any) -> dict[str, Any]:
    """A ``RunAgentInput`` as an AG-UI client sends it (checked against the SDK's model)."""
    body = {
        "threadId": "thread_1",
        "runId": "agui_run_1",
        "state": {},
        "messages": [{"id": "u1", "role": "user", "content": prompt}],
        "tools": [],
        "context": [],
        "forwardedProps": {},
        **fields,
    }
    RunAgentInput.model_validate(body)
    return body


async def read_frames(response: httpx.Response) -> list[SSEFrame]:
    """The data frames of an SSE response (comments such as ``: ping`` left out)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return [frame async for frame in sse_frames(response) if frame.data is not None]


def validated(frames: list[SSEFrame]) -> list[dict[str, Any]]:
    """The AG-UI events, each validated by the SDK; ids strictly increasing."""
    events = [frame.event for frame in frames]
    for event in events:
        AGUI_EVENT.validate_python(event)
    ids = [frame.id for frame in frames if frame.id is not None]
    assert ids == sorted(set(ids))
    assert frames[-1].id is not None  # a stream ends on a fully delivered native event
    return events


async def post_agui(gateway: RunningGateway, body: dict[str, Any]) -> tuple[str, list[SSEFrame]]:
    """POST ``body`` to ``/v1/ag-ui``; the gateway's run id and the frames, read to the end."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        async with client.stream("POST", "/v1/ag-ui", json=body, headers=SSE) as response:
            return response.headers["x-run-id"], await read_frames(response)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_a_countdown_run_streams_valid_agui_events_from_run_started_to_run_finished() -> None:
    body = agui_input("count down from 3", forwardedProps={"tools": ["countdown"]})
    with running_gateway() as gateway:
        run_id, frames = await post_agui(gateway, body)
        snapshot = await gateway.wait_run(run_id)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            url = f"/v1/runs/{run_id}/events?format=ag-ui"
            async with client.stream("GET", url) as response:
                reread = await read_frames(response)
    events = validated(frames)
    # Read again from the run's events URL: the same frames, with the client's ids.
    assert reread == frames

    assert events[0] == {**events[0], "type": "RUN_STARTED", "threadId": "thread_1"}
    assert events[0]["runId"] == "agui_run_1"
    assert events[-1]["type"] == "RUN_FINISHED"
    assert (events[-1]["threadId"], events[-1]["runId"]) == ("thread_1", "agui_run_1")
    assert "liftoff" in events[-1]["result"]
    assert not any(t in ("RUN_STARTED", "RUN_FINISHED", "RUN_ERROR") for t in types(events)[1:-1])
    assert frames[-1].id == snapshot["last_seq"]
    call = next(e for e in events if e["type"] == "TOOL_CALL_START")
    assert call["toolCallName"] == "countdown"
    args = "".join(e["delta"] for e in events if e["type"] == "TOOL_CALL_ARGS")
    assert json.loads(args) == {"start": 3}
    ticks = [
        op["value"]
        for e in events
        if e["type"] == "ACTIVITY_DELTA"
        for op in e["patch"]
        if op["path"] == "/deltas/-"
    ]
    assert ticks == ["3\n", "2\n", "1\n"]
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert result["toolCallId"] == call["toolCallId"]
    assert json.loads(result["content"])["counted_from"] == 3
    answer_ids = [e["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(answer_ids) == 2  # the preamble, then the answer after the tool ran
    answer = "".join(
        e["delta"]
        for e in events
        if e["type"] == "TEXT_MESSAGE_CONTENT" and e["messageId"] == answer_ids[-1]
    )
    assert answer == events[-1]["result"]


async def test_a_client_tool_round_trip_takes_two_runs_and_the_second_quotes_the_result() -> None:
    tool = {
        "name": "get_location",
        "description": "The user's location",
        "parameters": {"type": "object", "properties": {}},
    }
    first_input = agui_input("Where am I? Ask get_location.", tools=[tool])
    with running_gateway() as gateway:
        _, frames = await post_agui(gateway, first_input)
        first = validated(frames)

        # The run ends on the frontend's tool call: announced in full, not executed.
        start = next(e for e in first if e["type"] == "TOOL_CALL_START")
        assert start["toolCallName"] == "get_location"
        tail = types(first)[first.index(start) :]
        assert tail == ["TOOL_CALL_START"] + ["TOOL_CALL_ARGS"] * (len(tail) - 3) + [
            "TOOL_CALL_END",
            "RUN_FINISHED",
        ]
        assert len(tail) > 3
        assert "TOOL_CALL_RESULT" not in types(first)
        assert first[-1]["outcome"] == {
            "type": "success",
            "pendingToolCallIds": [start["toolCallId"]],
        }

        # The frontend runs the tool and sends the conversation back, as an AG-UI client
        # rebuilds it from the stream: the assistant message with its call, then the result.
        text = "".join(
            e["delta"]
            for e in first
            if e["type"] == "TEXT_MESSAGE_CONTENT" and e["messageId"] == start["parentMessageId"]
        )
        arguments = "".join(e["delta"] for e in first if e["type"] == "TOOL_CALL_ARGS")
        second_input = agui_input(
            "unused",
            runId="agui_run_2",
            tools=[tool],
            messages=[
                *first_input["messages"],
                {
                    "id": start["parentMessageId"],
                    "role": "assistant",
                    "content": text,
                    "toolCalls": [
                        {
                            "id": start["toolCallId"],
                            "type": "function",
                            "function": {"name": "get_location", "arguments": arguments},
                        }
                    ],
                },
                {
                    "id": "result_1",
                    "role": "tool",
                    "toolCallId": start["toolCallId"],
                    "content": json.dumps({"city": "Paris"}),
                },
            ],
        )
        _, frames = await post_agui(gateway, second_input)
        second = validated(frames)

    assert second[-1]["type"] == "RUN_FINISHED"
    assert second[-1]["runId"] == "agui_run_2"
    assert "outcome" not in second[-1]
    assert "TOOL_CALL_START" not in types(second)
    assert 'get_location returned {"city": "Paris"}' in second[-1]["result"]


async def test_resuming_an_agui_stream_with_last_event_id_repeats_and_loses_nothing() -> None:
    spec = {
        "model": "demo",
        "messages": [{"role": "user", "content": "What time is it? Also count down from 3."}],
        "tools": ["clock", "countdown"],
    }
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            started = (await client.post("/v1/runs", json=spec)).json()
            await gateway.wait_run(started["run_id"])
            url = f"{started['events_url']}?format=ag-ui"
            async with client.stream("GET", url) as response:
                full = await read_frames(response)
            events = validated(full)
            ids = [frame.id for frame in full if frame.id is not None]
            resumed: dict[int, list[SSEFrame]] = {}
            for cursor in ids[:-1]:
                headers = {"last-event-id": str(cursor)}
                async with client.stream("GET", url, headers=headers) as response:
                    resumed[cursor] = await read_frames(response)

    assert events[0]["threadId"] == events[0]["runId"] == started["run_id"]
    assert {"TOOL_CALL_START", "TOOL_CALL_RESULT", "ACTIVITY_DELTA"} <= set(types(events))
    for cursor, frames in resumed.items():
        position = next(i for i, frame in enumerate(full) if frame.id == cursor)
        assert frames == full[position + 1 :], f"resumed after {cursor}"


async def test_the_native_format_is_still_the_default_for_run_events() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            spec = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            started = (await client.post("/v1/runs", json=spec)).json()
            await gateway.wait_run(started["run_id"])
            async with client.stream("GET", started["events_url"]) as response:
                native = await read_frames(response)
            bad = await client.get(f"{started['events_url']}?format=xml")

    assert native[0].event["type"] == "run.started"
    assert bad.status_code in (
        400,
        422,
    )  # the gateway's status for a request that does not validate
    assert bad.json()["error"]["code"] == "invalid_request"


async def test_bad_agui_input_gets_a_4xx_json_error() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            missing = await client.post("/v1/ag-ui", json={"threadId": "t"})
            unknown_model = await client.post(
                "/v1/ag-ui", json=agui_input("hi", forwardedProps={"model": "nope"})
            )
            no_messages = await client.post("/v1/ag-ui", json=agui_input("hi", messages=[]))
            not_json = await client.post(
                "/v1/ag-ui", content=b"{", headers={"content-type": "application/json"}
            )

    assert missing.status_code in (400, 422)  # as for any request that does not validate
    assert missing.json()["error"]["code"] == "invalid_request"
    assert {d["field"] for d in missing.json()["error"]["details"]} >= {"runId", "messages"}
    assert unknown_model.status_code == 400
    assert "nope" in unknown_model.json()["error"]["message"]
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["code"] == "invalid_request"
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"
