"""The Vercel AI SDK's own chat (``AbstractChat`` + ``DefaultChatTransport``, what ``useChat``
runs, driven headless by tests/clients/ai_sdk_chat.mjs) against the gateway, for the latest
ai 5, 6 and 7 and the strict first release of each (x.0.0, whose chunk schemas are
``z.strictObject``: an unknown key is refused): a turn with two concurrent gateway tools, a
drop mid-turn and a fresh client's ``resumeStream()``, stop, resume after the end."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, require_binary
from tests.processes import run_to_end
from tests.support import RunningGateway, running_gateway

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
DRIVER = CLIENTS / "ai_sdk_chat.mjs"
# The npm aliases tests/clients/package.json pins: the latest of each major, and its first
# release (the strictest schema of the major).
ALIASES = ("ai5", "ai5-first", "ai6", "ai6-first", "ai7", "ai7-first")
DRIVER_TIMEOUT = 60.0  # seconds one scenario may take, Node's start included
PROMPT = "What time is it? And count down from 3."
TOOLS = ["clock", "countdown"]
# Slow enough that a turn outlives a drop and a resume (the countdown alone takes 0.6 s).
PACED = {"demo_token_delay": 0.01, "countdown_interval": 0.2}

# Its clients are the pinned `ai` releases, in Node: the production loop is the gateway's.
pytestmark = pytest.mark.production_loop


@pytest.fixture
def node() -> str:
    return require_binary("node", "install Node.js 20 or later")


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest) -> str:
    if not (CLIENTS / "node_modules" / request.param / "package.json").exists():
        message = f"{request.param} is not installed (cd tests/clients && npm ci)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return str(request.param)


async def drive(
    node: str, alias: str, scenario: str, gateway: RunningGateway, **config: Any
) -> dict[str, Any]:
    """Run one scenario of the driver; its JSON result."""
    settings = {
        "url": gateway.base_url,
        "model": "demo",
        "tools": TOOLS,
        "prompt": PROMPT,
        "chatId": f"chat-{uuid.uuid4().hex}",
        "timeoutMs": int(DRIVER_TIMEOUT * 1000) - 5000,
        **config,
    }
    returncode, stdout, stderr = await run_to_end(
        node,
        str(DRIVER),
        alias,
        scenario,
        json.dumps(settings),
        env={**os.environ, "NO_COLOR": "1"},
        timeout=DRIVER_TIMEOUT,
        cwd=CLIENTS,
    )
    assert returncode == 0, (returncode, stdout[-2000:], stderr[-4000:])
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    assert result["alias"] == alias
    return result


def accepted_everything(chat: dict[str, Any]) -> None:
    """No chunk the SDK refused: its own parser passed every raw chunk it was sent."""
    for exchange in chat["exchanges"]:
        raw = exchange["raw"]
        assert raw["refused"] == [], raw["refused"]
        if exchange["status"] == 200:
            assert exchange["streamHeader"] == "v1"
            assert all(entry.get("valid", True) for entry in raw["chunks"]), raw["chunks"]


def assistant_of(chat: dict[str, Any]) -> dict[str, Any]:
    *_, last = chat["messages"]
    assert last["role"] == "assistant", chat["messages"]
    return dict(last)


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def tool_parts(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        part["type"].removeprefix("tool-"): part
        for part in message["parts"]
        if part["type"].startswith("tool-")
    }


def assert_full_turn(message: dict[str, Any]) -> None:
    """The turn the demo model makes of PROMPT: a preamble, both tools with outputs, an
    answer quoting them."""
    tools = tool_parts(message)
    assert set(tools) == set(TOOLS), message["parts"]
    for part in tools.values():
        assert part["state"] == "output-available", part
        assert part["output"] is not None, part
    assert tools["countdown"]["input"] == {"start": 3}
    assert tools["clock"]["input"] == {}
    text = text_of(message)
    assert "Let me use clock and countdown" in text
    assert "the countdown from 3 reached" in text
    assert tools["clock"]["output"]["iso"] in text


def shape(message: dict[str, Any]) -> list[tuple[str, str | None]]:
    """A message's parts without ids or values: their kinds and states."""
    return [(part["type"], part.get("state")) for part in message["parts"]]


async def test_a_turn_with_two_concurrent_tools(node: str, alias: str) -> None:
    with running_gateway() as gateway:
        result = await drive(node, alias, "turn", gateway)
    (chat,) = result["chats"]
    assert chat["error"] is None and chat["errors"] == [], chat
    assert chat["status"] == "ready"
    accepted_everything(chat)
    (exchange,) = chat["exchanges"]
    assert exchange["raw"]["done"], "no data: [DONE] at the end"
    kinds = [chunk["type"] for chunk in chat["chunks"]]
    assert kinds[0] == "start" and kinds[-1] == "finish", kinds
    assert len(chat["chunks"]) == len(exchange["raw"]["chunks"])  # the SDK passed each one
    message = assistant_of(chat)
    assert_full_turn(message)
    assert chat["finished"] == [message["id"]]


async def test_a_fresh_client_resumes_a_dropped_turn(node: str, alias: str) -> None:
    with running_gateway(**PACED) as gateway:
        result = await drive(node, alias, "drop", gateway, dropAfter=4)
        reference = await drive(node, alias, "turn", gateway)
    dropped, uninterrupted, resumed = result["chats"]
    (post,) = dropped["exchanges"]
    assert post["droppedAfter"] == 4
    assert dropped["status"] == "error"  # the network went: the SDK's own view
    for chat in (uninterrupted, resumed):
        assert chat["error"] is None and chat["errors"] == [], chat
        assert chat["status"] == "ready"
        accepted_everything(chat)
        (get,) = chat["exchanges"]
        assert get["method"] == "GET" and get["status"] == 200, get
        assert get["runId"] == post["runId"]
        assert get["raw"]["done"]
    # The fresh client rebuilt exactly what an uninterrupted reader of the turn built ...
    assert resumed["messages"] == uninterrupted["messages"]
    message = assistant_of(resumed)
    assert_full_turn(message)
    # ... which is what a turn nobody interrupted builds, ids and the time aside.
    assert shape(message) == shape(assistant_of(reference["chats"][0]))
    # What the dropped client had is where the resumed message starts.
    partial = assistant_of(dropped)
    assert partial["id"] == message["id"]
    assert text_of(message).startswith(text_of(partial))


async def test_stop_ends_the_chat_and_cancels_the_run(node: str, alias: str) -> None:
    with running_gateway(**PACED) as gateway:
        result = await drive(node, alias, "stop", gateway)
        (chat,) = result["chats"]
        (post,) = chat["exchanges"]
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            run = (await http.get(f"/v1/runs/{post['runId']}")).json()
    assert chat["error"] is None and chat["errors"] == [], chat
    assert chat["status"] == "ready"
    accepted_everything(chat)
    assert chat["stop"]["status"] == 200, chat["stop"]
    assert json.loads(chat["stop"]["body"])["run_id"] == post["runId"]
    assert chat["chunks"][-1]["type"] == "abort", chat["chunks"]
    assert post["raw"]["done"]
    assert run["status"] == "cancelled", run
    message = assistant_of(chat)
    assert "countdown from 3 reached" not in text_of(message)


async def test_resume_after_the_end_changes_nothing(node: str, alias: str) -> None:
    with running_gateway() as gateway:
        result = await drive(node, alias, "resume-after-end", gateway)
    (chat,) = result["chats"]
    assert chat["error"] is None and chat["errors"] == [], chat
    accepted_everything(chat)
    post, get = chat["exchanges"]
    assert (post["method"], post["status"]) == ("POST", 200)
    assert (get["method"], get["status"]) == ("GET", 204)
    assert chat["messages"] == chat["before"]
    assert_full_turn(assistant_of(chat))
    # ai 5.0.0's resumeStream returns on a 204 without setting the status back (it stays
    # "submitted"; later releases say "ready"): the SDK's own quirk, nothing streams either way.
    assert chat["status"] in (("ready", "submitted") if alias == "ai5-first" else ("ready",))


# The releases with tool approvals (addToolApprovalResponse): ai 6 and 7.
APPROVING = ("ai6", "ai6-first", "ai7", "ai7-first")
APPROVAL_BODY = {"approval": "all", "features": ["tool-approval"]}


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
async def test_a_tool_approval_round_trip(node: str, alias: str, approve: bool) -> None:
    if alias not in APPROVING:
        pytest.skip(f"{alias} has no tool approvals")
    with running_gateway() as gateway:
        result = await drive(
            node,
            alias,
            "approval",
            gateway,
            prompt="What time is it?",
            tools=["clock"],
            body=APPROVAL_BODY,
            approve=approve,
            reason=None if approve else "not now",
        )
        (chat,) = result["chats"]
        first, second = chat["exchanges"]
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            run = (await http.get(f"/v1/runs/{first['runId']}")).json()
    assert chat["error"] is None and chat["errors"] == [], chat
    assert chat["status"] == "ready"
    accepted_everything(chat)
    # The first stream ends the SDK's turn at the request, the gateway run waiting on ...
    assert [c["chunk"]["type"] for c in first["raw"]["chunks"]][-3:] == [
        "tool-approval-request",
        "finish-step",
        "finish",
    ]
    assert first["raw"]["done"]
    asked = tool_parts(chat["approvalRequested"])["clock"]
    assert asked["state"] == "approval-requested"
    assert asked["approval"]["id"] == f"approval_{asked['toolCallId']}"
    # ... and the answer's request streams that same run on: no new turn.
    assert (second["method"], second["status"]) == ("POST", 200)
    assert second["runId"] == first["runId"]
    assert second["raw"]["done"]
    assert run["status"] == "completed", run
    assert run["pending_approvals"] == []
    message = assistant_of(chat)
    assert message["id"] == chat["approvalRequested"]["id"]
    clock = tool_parts(message)["clock"]
    assert chat["finished"] == [message["id"], message["id"]]
    if approve:
        assert clock["state"] == "output-available", clock
        assert clock["output"]["iso"] in text_of(message)
    else:
        assert clock["state"] == "output-denied", clock
        assert "output" not in clock
        assert "tool-output-denied" in [c["chunk"]["type"] for c in second["raw"]["chunks"]]
        assert "the user denied this tool call: not now" in text_of(message)


async def test_a_client_without_the_feature_sees_a_denial_as_an_error(
    node: str, alias: str
) -> None:
    """ai 5 (and any client that does not ask for approvals) gets no chunk it does not know:
    a call that waits is answered elsewhere (here: the runs API), a denial is its error."""
    with running_gateway() as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
            driving = asyncio.create_task(
                drive(
                    node,
                    alias,
                    "turn",
                    gateway,
                    prompt="What time is it?",
                    tools=["clock"],
                    body={"approval": "all"},
                )
            )
            run_id, call_id = await _pending_approval(gateway)
            answer = {"decision": "deny", "reason": "not now"}
            response = await http.post(f"/v1/runs/{run_id}/approvals/{call_id}", json=answer)
            assert response.status_code == 200, response.text
            result = await driving
    (chat,) = result["chats"]
    assert chat["error"] is None and chat["errors"] == [], chat
    accepted_everything(chat)
    kinds = [c["chunk"]["type"] for c in chat["exchanges"][0]["raw"]["chunks"]]
    assert "tool-approval-request" not in kinds and "tool-output-denied" not in kinds
    clock = tool_parts(assistant_of(chat))["clock"]
    assert clock["state"] == "output-error", clock
    assert clock["errorText"] == "tool_denied: not now"


async def _pending_approval(gateway: RunningGateway) -> tuple[str, str]:
    """The run and call of the first approval that waits on the gateway."""
    manager = gateway.state.manager

    def waiting() -> list[tuple[str, str]]:
        return [
            (run_id, pending["call_id"])
            for run_id in manager.active_run_ids
            for pending in manager.get_unchecked(run_id).pending_approvals()
        ]

    await gateway.wait_on_server(lambda: bool(waiting()), timeout=DRIVER_TIMEOUT)

    async def first() -> tuple[str, str]:
        return waiting()[0]

    return await gateway.call(first())
