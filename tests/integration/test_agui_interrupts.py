"""Approvals over AG-UI on a real gateway: a call that waits finishes the AG-UI run with an
interrupt, and the next ``RunAgentInput``'s ``resume[]`` continues the same gateway run.
Driven by AG-UI's own ``HttpAgent`` (``@ag-ui/client``, tests/clients/agui_interrupt.mjs)
for the round trips, and by httpx for the answers the face refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from ag_ui.core import Event as AGUIEventUnion
from ag_ui.core import RunAgentInput
from pydantic import TypeAdapter

from tests.conftest import IN_CI, require_binary
from tests.processes import run_to_end
from tests.support import RunningGateway, running_gateway, sse_frames

# The core suite: every test here runs on the in-memory store and on Redis.
# Its client is AG-UI's own HttpAgent, in Node: the production loop is the gateway's.
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.production_loop]

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
DRIVER = CLIENTS / "agui_interrupt.mjs"
DRIVER_TIMEOUT = 60.0  # seconds one round trip may take, Node's start included
PROPS = {"model": "demo", "tools": ["clock"], "approval": "all"}
AGUI_EVENT: TypeAdapter[Any] = TypeAdapter(AGUIEventUnion)
SSE = {"accept": "text/event-stream"}


@pytest.fixture
def node() -> str:
    binary = require_binary("node", "install Node.js 20 or later")
    if not (CLIENTS / "node_modules" / "@ag-ui" / "client" / "package.json").exists():
        message = "@ag-ui/client is not installed (cd tests/clients && npm ci)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


async def round_trip(node: str, gateway: RunningGateway, answer: dict[str, Any]) -> Any:
    """The driver's result: HttpAgent's run to the interrupt, then its resumed run."""
    settings = {
        "url": gateway.base_url,
        "prompt": "What time is it?",
        "forwardedProps": PROPS,
        "answer": answer,
        "timeoutMs": int(DRIVER_TIMEOUT * 1000) - 5000,
    }
    returncode, stdout, stderr = await run_to_end(
        node,
        str(DRIVER),
        json.dumps(settings),
        env={**os.environ, "NO_COLOR": "1"},
        timeout=DRIVER_TIMEOUT,
        cwd=CLIENTS,
    )
    assert returncode == 0, (returncode, stdout[-2000:], stderr[-4000:])
    result = json.loads(stdout.strip().splitlines()[-1])
    for run in result["runs"]:
        assert run["errors"] == []
        for event in run["events"]:
            AGUI_EVENT.validate_python(event)
    return result


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def the_interrupt(result: dict[str, Any]) -> dict[str, Any]:
    """The first run: the assistant's call of clock, then RUN_FINISHED with its interrupt."""
    first, _ = result["runs"]
    assert first["finished"]["outcome"] == "interrupt"
    (interrupt,) = result["interrupts"]
    assert first["finished"]["interrupts"] == [interrupt]
    assert types(first["events"])[-3:] == ["TOOL_CALL_ARGS", "TOOL_CALL_END", "RUN_FINISHED"]
    call_id = interrupt["toolCallId"]
    assert interrupt["id"].endswith(f":{call_id}")
    assert interrupt["reason"] == "tool_approval"
    assert interrupt["metadata"] == {"toolName": "clock", "arguments": {}}
    assert "expiresAt" in interrupt
    return dict(interrupt)


def messages_by_role(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for message in result["messages"]:
        out.setdefault(message["role"], []).append(message)
    return out


async def test_http_agent_approves_the_interrupt_and_the_same_run_completes_with_the_result(
    node: str,
) -> None:
    with running_gateway() as gateway:
        result = await round_trip(
            node, gateway, {"status": "resolved", "payload": {"approved": True}}
        )
        interrupt = the_interrupt(result)
        run_id = interrupt["id"].split(":", 1)[0]
        snapshot = await gateway.wait_run(run_id)

    assert snapshot["status"] == "completed"
    assert snapshot["pending_approvals"] == []
    assert result["resume"] == [
        {"interruptId": interrupt["id"], "status": "resolved", "payload": {"approved": True}}
    ]
    _, second = result["runs"]
    assert second["finished"] == {"outcome": "success", "interrupts": None}
    events = second["events"]
    assert events[0]["type"] == "RUN_STARTED" and events[0]["runId"] == "agui_run_2"
    assert events[1]["name"] == "tool.approved"
    assert events[1]["value"]["call_id"] == interrupt["toolCallId"]
    assert events[-1]["type"] == "RUN_FINISHED" and events[-1]["runId"] == "agui_run_2"
    # The thread as the SDK holds it: the call, its result, the answer quoting it.
    roles = messages_by_role(result)
    (tool,) = roles["tool"]
    assert tool["toolCallId"] == interrupt["toolCallId"]
    iso = json.loads(tool["content"])["iso"]
    first_answer, final = roles["assistant"]
    assert [call["id"] for call in first_answer["toolCalls"]] == [interrupt["toolCallId"]]
    assert iso in final["content"]
    assert result["pendingInterrupts"] == []


async def test_http_agent_denies_the_interrupt_and_the_model_reads_the_refusal(
    node: str,
) -> None:
    answer = {"status": "resolved", "payload": {"approved": False, "reason": "not now"}}
    with running_gateway() as gateway:
        result = await round_trip(node, gateway, answer)
        interrupt = the_interrupt(result)
        snapshot = await gateway.wait_run(interrupt["id"].split(":", 1)[0])

    assert snapshot["status"] == "completed"
    _, second = result["runs"]
    assert second["finished"]["outcome"] == "success"
    assert "ACTIVITY_SNAPSHOT" not in types(second["events"])  # the tool never ran
    denied = second["events"][1]
    assert denied["name"] == "tool.denied"
    assert denied["value"] == {
        "call_id": interrupt["toolCallId"],
        "by": "anonymous",
        "reason": "not now",
    }
    roles = messages_by_role(result)
    (tool,) = roles["tool"]
    refusal = "the user denied this tool call: not now"
    assert json.loads(tool["content"]) == {"error": refusal}
    assert refusal in roles["assistant"][-1]["content"]


# -- answers the face refuses -----------------------------------------------------------------


def agui_input(run_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "threadId": "thread_1",
        "runId": run_id,
        "messages": [{"id": "u1", "role": "user", "content": "What time is it?"}],
        "forwardedProps": PROPS,
        **fields,
    }
    RunAgentInput.model_validate(body)  # as an AG-UI client would send it
    return body


async def interrupted(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """Start a run whose clock call waits; its gateway run id and the interrupt."""
    async with client.stream(
        "POST", "/v1/ag-ui", json=agui_input("agui_run_1"), headers=SSE
    ) as response:
        assert response.status_code == 200
        events = [frame.event async for frame in sse_frames(response) if frame.data is not None]
    finished = events[-1]
    assert finished["type"] == "RUN_FINISHED"
    (interrupt,) = finished["outcome"]["interrupts"]
    return response.headers["x-run-id"], interrupt


async def test_bad_resume_input_is_a_400_and_the_call_still_waits() -> None:
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            run_id, interrupt = await interrupted(client)

            async def resume(*entries: dict[str, Any]) -> httpx.Response:
                body = agui_input("agui_run_2", resume=list(entries))
                return await client.post("/v1/ag-ui", json=body, headers=SSE)

            made_up = await resume({"interruptId": "not-ours", "status": "resolved"})
            no_payload = await resume({"interruptId": interrupt["id"], "status": "resolved"})
            bad_payload = await resume(
                {"interruptId": interrupt["id"], "status": "resolved", "payload": {"ok": 1}}
            )
            wrong_seq = await resume(
                {
                    "interruptId": f"{run_id}:1:{interrupt['toolCallId']}",
                    "status": "resolved",
                    "payload": {"approved": True},
                }
            )
            no_run = await resume(
                {
                    "interruptId": f"run_0000000000000000:9:{interrupt['toolCallId']}",
                    "status": "resolved",
                    "payload": {"approved": True},
                }
            )
            waiting = (await client.get(f"/v1/runs/{run_id}")).json()["pending_approvals"]

            cancelled = {"interruptId": interrupt["id"], "status": "cancelled"}
            async with client.stream(
                "POST", "/v1/ag-ui", json=agui_input("agui_run_2", resume=[cancelled]), headers=SSE
            ) as response:
                assert response.status_code == 200
                events = [f.event async for f in sse_frames(response) if f.data is not None]
            again = await resume(cancelled)
        snapshot = await gateway.wait_run(run_id)

    for refused in (made_up, no_payload, bad_payload):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_request"
    assert "names no interrupt" in made_up.json()["error"]["message"]
    assert "payload" in bad_payload.json()["error"]["message"]
    for unknown in (wrong_seq, no_run):
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"]["code"] == "not_found"
    assert [entry["call_id"] for entry in waiting] == [interrupt["toolCallId"]]
    # A cancelled entry denies the call: the run goes on, and the second answer is a 409.
    assert events[0]["type"] == "RUN_STARTED" and events[0]["runId"] == "agui_run_2"
    assert [e["name"] for e in events if e["type"] == "CUSTOM"] == ["tool.denied"]
    assert events[-1]["type"] == "RUN_FINISHED"
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "approval_answered"
    assert snapshot["status"] == "completed"
