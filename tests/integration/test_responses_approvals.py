"""Approvals through the Responses face, with the official openai SDK: a response ends with an
``mcp_approval_request`` item while the run waits; a new request (``previous_response_id`` and
an ``mcp_approval_response``) answers it and is the run's next response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseInputParam

from streams.dialects.responses import run_id_of
from tests.gateway_process import api_keys
from tests.support import RunningGateway, running_gateway
from tests.upstream_server import UpstreamServer, chat_tool_reply, text_reply

pytestmark = pytest.mark.usefixtures("backend")

QUESTION = "What time is it?"
ASKING: Any = {
    "type": "mcp",
    "server_label": "gateway",
    "server_url": "gateway:",
    "allowed_tools": ["clock"],
    "require_approval": "always",
}


NOT_ASKING: Any = {**ASKING, "require_approval": "never"}


@pytest.fixture
def gateway() -> Iterator[RunningGateway]:
    with running_gateway() as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    ) as sdk:
        yield sdk


def answer(request_id: str, approve: bool, reason: str | None = None) -> ResponseInputParam:
    item: dict[str, Any] = {
        "type": "mcp_approval_response",
        "approval_request_id": request_id,
        "approve": approve,
    }
    if reason is not None:
        item["reason"] = reason
    return [item]  # type: ignore[list-item]


async def pending(gateway: RunningGateway, response: Response) -> list[Any]:
    """The calls the response's run waits on (its snapshot's ``pending_approvals``)."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        snapshot = (await http.get(f"/v1/runs/{run_id_of(response.id)}")).json()
    return list(snapshot["pending_approvals"])


def approval_request(response: Response) -> Any:
    (request,) = [item for item in response.output if item.type == "mcp_approval_request"]
    return request


async def streamed(stream: Any) -> tuple[list[str], Response]:
    """The types of a stream's events, and the response its last event carries."""
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    return [event.type for event in events], events[-1].response


@pytest.mark.parametrize("require", ["always", {"always": {"tool_names": ["clock"]}}])
async def test_a_streamed_response_asks_and_the_next_one_runs_the_approved_call(
    client: openai.AsyncOpenAI, require: Any
) -> None:
    asking = {**ASKING, "require_approval": require}
    stream = await client.responses.create(
        model="demo", input=QUESTION, tools=[asking], stream=True
    )
    types, first = await streamed(stream)
    request = approval_request(first)
    assert (request.name, request.server_label, request.arguments) == ("clock", "gateway", "{}")
    assert request.id.startswith("mcpr_")
    assert types[-3:] == [
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    assert "the time is" not in first.output_text  # the call waits: no answer yet

    stream = await client.responses.create(
        model="demo",
        previous_response_id=first.id,
        input=answer(request.id, True),
        tools=[asking],
        stream=True,
    )
    types, second = await streamed(stream)

    assert types[:2] == ["response.created", "response.in_progress"]
    assert second.id.startswith(first.id + "_")
    assert second.previous_response_id == first.id
    (call,) = [item for item in second.output if item.type == "mcp_call"]
    assert (call.name, call.status, call.approval_request_id) == ("clock", "completed", request.id)
    assert call.output is not None and '"iso"' in call.output
    assert "the time is" in second.output_text


async def test_a_whole_response_asks_and_a_denial_goes_back_to_the_model(
    client: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    first = await client.responses.create(
        model="demo",
        input=QUESTION,
        tools=[NOT_ASKING],
        extra_body={"approval": "all"},
    )
    assert first.status == "completed"
    request = approval_request(first)
    assert [call["name"] for call in await pending(gateway, first)] == ["clock"]

    second = await client.responses.create(
        model="demo",
        previous_response_id=first.id,
        input=answer(request.id, False, "not now"),
    )

    assert second.status == "completed"
    assert [item.type for item in second.output] == ["message"]
    assert "the user denied this tool call: not now" in second.output_text
    again = await client.responses.retrieve(second.id)
    assert again.id == second.id
    assert again.output_text == second.output_text


async def test_a_second_answer_is_a_409_in_openai_error_shape(
    client: openai.AsyncOpenAI,
) -> None:
    first = await client.responses.create(model="demo", input=QUESTION, tools=[ASKING])
    request = approval_request(first)
    await client.responses.create(
        model="demo", previous_response_id=first.id, input=answer(request.id, True)
    )

    with pytest.raises(openai.ConflictError) as raised:
        await client.responses.create(
            model="demo", previous_response_id=first.id, input=answer(request.id, False)
        )

    assert raised.value.status_code == 409
    assert raised.value.code == "approval_answered"
    assert isinstance(raised.value.body, dict)
    assert set(raised.value.body) >= {"message", "type", "code"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "previous_response_id is required"),
        ({"input": "mixed"}, "holds only mcp_approval_response items"),
        ({"request_id": "call_1"}, "approval_request_id must be"),
        ({"approve": "yes"}, "approve must be true or false"),
    ],
)
async def test_a_malformed_answer_is_a_400_and_the_call_still_waits(
    client: openai.AsyncOpenAI, gateway: RunningGateway, extra: dict[str, Any], message: str
) -> None:
    first = await client.responses.create(model="demo", input=QUESTION, tools=[ASKING])
    request = approval_request(first)
    items: list[Any] = list(answer(extra.get("request_id", request.id), True))
    if "approve" in extra:
        items[0]["approve"] = extra["approve"]
    if extra.get("input") == "mixed":
        items.append({"role": "user", "content": "and?"})
    previous: dict[str, Any] = {} if not extra else {"previous_response_id": first.id}

    with pytest.raises(openai.BadRequestError) as raised:
        await client.responses.create(model="demo", input=items, **previous)

    assert message in raised.value.message
    waiting = [call["call_id"] for call in await pending(gateway, first)]
    assert waiting == [request.id.removeprefix("mcpr_")]


async def test_only_the_runs_owner_may_answer() -> None:
    with running_gateway(api_keys=api_keys("alice", "bob")) as gateway:
        clients = {
            key: openai.AsyncOpenAI(
                base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0, timeout=10
            )
            for key in ("alice", "bob")
        }
        first = await clients["alice"].responses.create(
            model="demo", input=QUESTION, tools=[ASKING]
        )
        request = approval_request(first)

        with pytest.raises(openai.NotFoundError):
            await clients["bob"].responses.create(
                model="demo", previous_response_id=first.id, input=answer(request.id, True)
            )
        second = await clients["alice"].responses.create(
            model="demo", previous_response_id=first.id, input=answer(request.id, True)
        )

        assert "the time is" in second.output_text
        for sdk in clients.values():
            await sdk.close()


async def until_done(connection: Any) -> list[Any]:
    """A socket's events up to the end of one response (or an error)."""
    events = []
    async for event in connection:
        events.append(event)
        if event.type in ("response.completed", "response.failed", "error"):
            break
    return events


async def test_over_the_socket_a_response_asks_and_the_next_one_answers(
    client: openai.AsyncOpenAI,
) -> None:
    async with client.responses.connect() as connection:
        await connection.send(
            {"type": "response.create", "model": "demo", "input": QUESTION, "tools": [ASKING]}
        )
        first = (await until_done(connection))[-1].response
        request = approval_request(first)
        create: Any = {
            "type": "response.create",
            "model": "demo",
            "previous_response_id": first.id,
            "input": answer(request.id, True),
        }
        await connection.send(create)
        events = await until_done(connection)
        await connection.send(create)  # answered already: an error, and the socket goes on
        (error,) = await until_done(connection)

    assert events[0].type == "response.created"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    second = events[-1].response
    assert second.previous_response_id == first.id
    assert "the time is" in second.output_text
    assert error.type == "error"
    assert error.error.code == "approval_answered"


async def test_a_follow_up_reads_the_whole_conversation_of_the_approved_run(
    upstream: UpstreamServer,
) -> None:
    upstream.script(
        chat_tool_reply("c1", "clock", "{}"), text_reply("It is noon."), text_reply("ok")
    )
    route = {"base_url": upstream.base_url, "model": "up-model", "max_attempts": 1}
    with running_gateway(routes={"up": route}) as gateway:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
        ) as client:
            first = await client.responses.create(model="up", input=QUESTION, tools=[ASKING])
            request = approval_request(first)
            second = await client.responses.create(
                model="up", previous_response_id=first.id, input=answer(request.id, True)
            )
            third = await client.responses.create(
                model="up", previous_response_id=second.id, input="thanks"
            )

    assert second.output_text == "It is noon."
    assert third.output_text == "ok"
    messages = upstream.wait_for_requests(3)[2].body["messages"]
    assert [(m["role"], m.get("content")) for m in messages] == [
        ("user", QUESTION),
        ("assistant", "It is noon."),
        ("user", "thanks"),
    ]
