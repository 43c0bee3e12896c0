"""The AI SDK face's tool approvals over a real gateway, read as raw SSE: a turn that waits
ends the SDK's turn while the run waits on (and a resume shows the request again); the next
request of the chat carries the answer and streams that same run on; answers that do not fit
are refused as the face refuses bad input, and an answer another client gave first stands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from streams.dialects.ai_sdk import approval_id
from streams.events import EventType
from tests.gateway_process import api_keys
from tests.integration.test_ai_sdk_face import CHAT, chat_body, chunks
from tests.support import RunningGateway, all_events, running_gateway

pytestmark = pytest.mark.usefixtures("backend")

ASK = {"tools": ["clock"], "approval": "all", "features": ["tool-approval"]}
PROMPT = "What time is it?"


@pytest.fixture
def gateway() -> AsyncIterator[RunningGateway]:
    with running_gateway() as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


def kinds(body: bytes) -> list[str]:
    return [value if value == "[DONE]" else value["type"] for value in chunks(body)]


async def ask(http: httpx.AsyncClient, chat_id: str) -> tuple[str, dict[str, Any]]:
    """Start a turn that waits for the clock's approval; its run id and the tool part the
    SDK holds once the stream has paused."""
    response = await http.post(CHAT, json=chat_body(chat_id, PROMPT, **ASK))
    assert response.status_code == 200, response.text
    assert kinds(response.content)[-4:] == [
        "tool-approval-request",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    values = chunks(response.content)
    (request,) = [v for v in values[:-1] if v["type"] == "tool-approval-request"]
    start = values[0]
    part = {
        "type": "tool-clock",
        "toolCallId": request["toolCallId"],
        "state": "approval-responded",
        "input": {},
        "approval": {"id": request["approvalId"]},
    }
    return response.headers["x-run-id"], {"messageId": start["messageId"], "part": part}


def answering(
    chat_id: str, asked: dict[str, Any], approved: bool, reason: str | None = None, **part: Any
) -> dict[str, Any]:
    """The body the SDK sends after addToolApprovalResponse."""
    approval = {**asked["part"]["approval"], "approved": approved}
    if reason is not None:
        approval["reason"] = reason
    body = chat_body(chat_id, PROMPT, **ASK)
    assistant = {
        "id": asked["messageId"],
        "role": "assistant",
        "parts": [{"type": "step-start"}, {**asked["part"], "approval": approval, **part}],
    }
    body["messages"].append(assistant)
    body["messageId"] = asked["messageId"]
    return body


async def test_the_run_waits_without_a_reader_and_the_answer_streams_it_on(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    run_id, asked = await ask(http, "chat-1")
    call_id = asked["part"]["toolCallId"]
    assert asked["part"]["approval"]["id"] == approval_id(call_id)
    run = (await http.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "running"
    assert [p["call_id"] for p in run["pending_approvals"]] == [call_id]
    # A reload resumes the turn: the same request, the same pause.
    resumed = await http.get(f"{CHAT}/chat-1/stream")
    assert resumed.status_code == 200
    assert kinds(resumed.content)[-4:] == [
        "tool-approval-request",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    answer = await http.post(CHAT, json=answering("chat-1", asked, True))
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-run-id"] == run_id
    values = chunks(answer.content)
    assert values[0] == {"type": "start", "messageId": asked["messageId"]}
    output = next(v for v in values[:-1] if v["type"] == "tool-output-available")
    assert output["toolCallId"] == call_id
    assert kinds(answer.content)[-3:] == ["finish-step", "finish", "[DONE]"]
    snapshot = await gateway.wait_run(run_id)
    assert snapshot["status"] == "completed"
    assert snapshot["pending_approvals"] == []


async def test_a_denial_goes_to_the_model_and_the_turn_carries_on(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    run_id, asked = await ask(http, "chat-2")
    answer = await http.post(CHAT, json=answering("chat-2", asked, False, "not now"))
    assert answer.status_code == 200, answer.text
    values = chunks(answer.content)
    assert values[:2] == [
        {"type": "start", "messageId": asked["messageId"]},
        {"type": "tool-output-denied", "toolCallId": asked["part"]["toolCallId"]},
    ]
    text = "".join(v["delta"] for v in values[:-1] if v["type"] == "text-delta")
    assert "the user denied this tool call: not now" in text
    assert (await gateway.wait_run(run_id))["status"] == "completed"


async def test_an_answer_given_first_elsewhere_stands(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    run_id, asked = await ask(http, "chat-3")
    call_id = asked["part"]["toolCallId"]
    other = await http.post(f"/v1/runs/{run_id}/approvals/{call_id}", json={"decision": "deny"})
    assert other.status_code == 200, other.text
    # This client still shows the request and approves: the stream shows the denial.
    answer = await http.post(CHAT, json=answering("chat-3", asked, True))
    assert answer.status_code == 200, answer.text
    assert {"type": "tool-output-denied", "toolCallId": call_id} in chunks(answer.content)
    assert (await gateway.wait_run(run_id))["status"] == "completed"


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        pytest.param({"messageId": "msg_other"}, "invalid_request", 400, id="another-message"),
        pytest.param({"approval_id": "approval_nope"}, "invalid_request", 400, id="bad-id"),
        pytest.param({"chat_id": "chat-unknown"}, "not_found", 404, id="no-such-chat"),
    ],
)
async def test_answers_that_do_not_fit_are_refused_and_the_call_still_waits(
    http: httpx.AsyncClient, change: dict[str, str], code: str, status: int
) -> None:
    run_id, asked = await ask(http, "chat-4")
    if "messageId" in change:
        asked = {**asked, "messageId": change["messageId"]}
    if "approval_id" in change:
        asked = {**asked, "part": {**asked["part"], "approval": {"id": change["approval_id"]}}}
    body = answering(change.get("chat_id", "chat-4"), asked, True)
    response = await http.post(CHAT, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    run = (await http.get(f"/v1/runs/{run_id}")).json()
    assert [p["call_id"] for p in run["pending_approvals"]] == [asked["part"]["toolCallId"]]


async def test_only_the_chat_s_key_answers() -> None:
    with running_gateway(api_keys=api_keys("alice", "bob")) as gateway:
        async with (
            httpx.AsyncClient(
                base_url=gateway.base_url, headers={"authorization": "Bearer alice"}, timeout=10
            ) as alice,
            httpx.AsyncClient(
                base_url=gateway.base_url, headers={"authorization": "Bearer bob"}, timeout=10
            ) as bob,
        ):
            run_id, asked = await ask(alice, "chat-a")
            refused = await bob.post(CHAT, json=answering("chat-a", asked, True))
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "not_found"
            answer = await alice.post(CHAT, json=answering("chat-a", asked, True))
            assert answer.status_code == 200
            assert answer.headers["x-run-id"] == run_id
            await gateway.wait_run(run_id)
            events = await gateway.call(all_events(gateway.state.manager, run_id))
    (approved,) = [e for e in events if e.type is EventType.TOOL_APPROVED]
    assert approved.data["by"] == "alice"


async def test_a_resume_after_an_answer_given_elsewhere_goes_on_past_the_pause() -> None:
    # A countdown slow enough that the turn still runs when the client resumes it.
    with running_gateway(countdown_interval=0.5) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            body = chat_body("chat-5", "count down from 3", **{**ASK, "tools": ["countdown"]})
            first = await http.post(CHAT, json=body)
            assert kinds(first.content)[-3:] == ["finish-step", "finish", "[DONE]"]
            run_id = first.headers["x-run-id"]
            (request,) = [
                v for v in chunks(first.content)[:-1] if v["type"] == "tool-approval-request"
            ]
            call_id = request["toolCallId"]
            url = f"/v1/runs/{run_id}/approvals/{call_id}"
            assert (await http.post(url, json={"decision": "approve"})).status_code == 200
            resumed = await http.get(f"{CHAT}/chat-5/stream")
            assert resumed.status_code == 200
            values = chunks(resumed.content)
            assert (await gateway.wait_run(run_id))["status"] == "completed"
    seen = [v if v == "[DONE]" else v["type"] for v in values]
    # One stream, the whole turn: the request, the countdown's output, the answer.
    assert seen.count("finish") == 1 and seen[-2:] == ["finish", "[DONE]"]
    assert seen.index("tool-approval-request") < seen.index("tool-output-available")
    assert "start" not in seen[1:]
