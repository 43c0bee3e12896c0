"""Failover after output has started: a route that stalls, is reset, sends a malformed chunk
or simply ends without ``[DONE]`` once the client has seen part of its answer, under each
policy of a model group (``fail``, ``restart``, ``continue``; the group's own and the
request's ``"failover"`` option), for native runs and Chat Completions.

Every scenario checks what the client kept (the deltas after the last retraction: nothing
duplicated, nothing lost) and that no upstream request outlived the run, from the upstream's
records and from the kernel's table of connections. The group's routes are ``a`` (the one
that fails after output), ``b`` and, where a third is needed, ``c``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.failover.support import GROUP, group_gateway, no_request_left_open, of_type
from tests.failover.support_after import chat, shown_text, types
from tests.support import RunningGateway, agent_spec, run_events, running_gateway
from tests.upstream_server import (
    RESET,
    STALL,
    Reply,
    Step,
    UpstreamServer,
    anthropic_route,
    anthropic_text_reply,
    chat_chunk,
    chat_tool_reply,
    error_reply,
    route,
    text_reply,
)

IDLE = 0.3  # the routes' idle_timeout: a stall past it is a failure after output

PARTIAL = ("The answer", " is ")  # what route a says before it fails
PARTIAL_TEXT = "".join(PARTIAL)
ANSWER = ("Forty", "-two.")  # route b's whole answer, from scratch
ANSWER_TEXT = "".join(ANSWER)
WHOLE_TEXT = "The answer is 42."  # the partial answer and its continuation, joined once


@dataclass(frozen=True)
class Fault:
    """How route a fails once it has said :data:`PARTIAL`: the steps it sends then,
    the ``message.rerouted`` reason and the error code it fails a step with."""

    name: str
    steps: tuple[Step, ...]
    reason: str
    code: str


FAULTS = [
    # Silent past idle_timeout; the upstream waits for the gateway to hang up.
    Fault("stall_after_output", (STALL,), "idle_timeout", "upstream_timeout"),
    Fault("reset_after_output", (RESET,), "unavailable", "upstream_unavailable"),
    # The stall after it: the gateway must hang up on its own, not wait for the end.
    Fault(
        "malformed_chunk_after_output",
        (b"data: {not json\n\n", STALL),
        "protocol",
        "upstream_protocol",
    ),
    # Chunks, then the body ends: no finish chunk, no [DONE].
    Fault("no_done_after_output", (), "stream_broken", "upstream_stream_error"),
]
FAULT_IDS = [fault.name for fault in FAULTS]
RESET_FAULT = FAULTS[1]

# The group's own policy, and once (the reset) the request's option overriding another.
VIA = [(fault, "group") for fault in FAULTS] + [(RESET_FAULT, "request")]
VIA_IDS = [f"{fault.name}-{via}" for fault, via in VIA]
OTHER_POLICY = {"fail": "restart", "restart": "fail", "continue": "fail"}


def cut_reply(fault: Fault) -> Reply:
    """Route a's answer: the partial text, then the fault."""
    steps: list[Step] = [chat_chunk({"role": "assistant", "content": ""})]
    steps += [chat_chunk({"content": part}) for part in PARTIAL]
    return Reply(steps=[*steps, *fault.steps])


def group_policy(policy: str, via: str) -> str:
    """The group's policy for a case: ``policy`` itself, or another the request overrides."""
    return policy if via == "group" else OTHER_POLICY[policy]


def request_options(policy: str, via: str) -> dict[str, Any]:
    return {"failover": policy} if via == "request" else {}


@pytest.fixture
def c() -> Iterator[UpstreamServer]:
    """The upstream of a third route, ``c``."""
    with UpstreamServer() as server:
        yield server


def routes(a: UpstreamServer, b: UpstreamServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of the routes ``a`` and ``b`` of the group (a small idle_timeout)."""
    return route(a, idle_timeout=IDLE), route(b, idle_timeout=IDLE)


def assert_restarted(events: list[dict[str, Any]], fault: Fault, answer: str) -> None:
    """The partial deltas, one retraction, the switch, then ``answer`` from its start."""
    kinds = types(events)
    assert kinds.count("message.retracted") == 1
    retracted = kinds.index("message.retracted")
    assert kinds[retracted + 1] == "message.rerouted"
    before = "".join(e["delta"] for e in of_type(events[:retracted], "message.delta"))
    assert before == PARTIAL_TEXT
    message_id = of_type(events, "message.started")[0]["message_id"]
    assert events[retracted]["message_id"] == message_id
    assert events[retracted]["reason"] == fault.reason
    rerouted = events[retracted + 1]
    assert {k: rerouted[k] for k in ("message_id", "from", "to", "reason")} == {
        "message_id": message_id,
        "from": "a",
        "to": "b",
        "reason": fault.reason,
    }
    assert shown_text(events) == answer
    assert of_type(events, "message.completed")[0]["text"] == answer
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == answer


async def assert_attempts(
    gateway: RunningGateway, events: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    """The run's state lists each route's try at its first step: (route, outcome)."""
    snapshot = await gateway.wait_run(events[0]["run_id"])
    attempts = snapshot["producers"][0]["attempts"]
    assert [(a["route"], a["outcome"]) for a in attempts] == expected


# -- fail -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "via"), VIA, ids=VIA_IDS)
async def test_fail_after_output_native(
    a: UpstreamServer, b: UpstreamServer, fault: Fault, via: str
) -> None:
    a.script(cut_reply(fault))
    spec = agent_spec("q", model=GROUP, options=request_options("fail", via))
    with group_gateway(*routes(a, b), policy=group_policy("fail", via)) as gateway:
        events = await run_events(gateway, spec)
        await assert_attempts(gateway, events, [("a", "failed")])
    kinds = types(events)
    assert "message.completed" not in kinds and "run.completed" not in kinds
    assert "message.retracted" not in kinds and "message.rerouted" not in kinds
    assert of_type(events, "message.failed")[0]["error"]["code"] == fault.code
    assert events[-1]["type"] == "run.failed"
    assert shown_text(events) == PARTIAL_TEXT
    assert b.requests == []
    await no_request_left_open(a, b)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize(("fault", "via"), VIA, ids=VIA_IDS)
async def test_fail_after_output_chat_completions(
    a: UpstreamServer, b: UpstreamServer, fault: Fault, via: str, stream: bool
) -> None:
    a.script(cut_reply(fault))
    with group_gateway(*routes(a, b), policy=group_policy("fail", via)) as gateway:
        outcome = await chat(gateway, stream=stream, **request_options("fail", via))
    assert outcome.error is not None  # never a clean finish
    assert outcome.error.code == fault.code
    if stream:
        assert outcome.text == PARTIAL_TEXT  # the partial text, then the error
    else:
        status = getattr(outcome.error, "status_code", None)
        assert status is not None and 500 <= status < 600
        assert isinstance(outcome.error.body, dict)
        assert set(outcome.error.body) >= {"message", "type", "code"}  # OpenAI's error shape
    assert b.requests == []
    await no_request_left_open(a, b)


# -- restart ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "via"), VIA, ids=VIA_IDS)
async def test_restart_after_output_native(
    a: UpstreamServer, b: UpstreamServer, fault: Fault, via: str
) -> None:
    a.script(cut_reply(fault))
    b.script(text_reply(*ANSWER))
    spec = agent_spec("q", model=GROUP, options=request_options("restart", via))
    with group_gateway(*routes(a, b), policy=group_policy("restart", via)) as gateway:
        events = await run_events(gateway, spec)
        await assert_attempts(gateway, events, [("a", "failed"), ("b", "completed")])
    assert_restarted(events, fault, ANSWER_TEXT)
    # Route b was asked the question afresh, not to go on with the partial answer.
    assert b.requests[0].body["messages"][-1]["role"] == "user"
    await no_request_left_open(a, b)


@pytest.mark.parametrize(("fault", "via"), VIA, ids=VIA_IDS)
async def test_restart_after_output_chat_completions_whole(
    a: UpstreamServer, b: UpstreamServer, fault: Fault, via: str
) -> None:
    a.script(cut_reply(fault))
    b.script(text_reply(*ANSWER))
    with group_gateway(*routes(a, b), policy=group_policy("restart", via)) as gateway:
        outcome = await chat(gateway, stream=False, **request_options("restart", via))
    assert outcome.error is None
    assert outcome.text == ANSWER_TEXT  # seamless: nothing of the partial answer
    await no_request_left_open(a, b)


@pytest.mark.parametrize(("fault", "via"), VIA, ids=VIA_IDS)
async def test_restart_after_output_chat_completions_streamed_is_an_error(
    a: UpstreamServer, b: UpstreamServer, fault: Fault, via: str
) -> None:
    # Chat Completions cannot take back text a client has shown: the stream ends with an
    # error chunk (output_retracted) and [DONE], never the partial and the new answer joined.
    a.script(cut_reply(fault))
    b.script(text_reply(*ANSWER))
    with group_gateway(*routes(a, b), policy=group_policy("restart", via)) as gateway:
        outcome = await chat(gateway, stream=True, **request_options("restart", via))
    assert outcome.error is not None
    assert outcome.error.code == "output_retracted"
    assert outcome.text == PARTIAL_TEXT
    await no_request_left_open(a, b)


# -- continue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Continuation:
    """Route b for the ``continue`` policy: its route's settings (beyond the base URL),
    its answer, and whether it goes on after the partial answer or restarts the step."""

    name: str
    anthropic: bool
    settings: dict[str, Any]
    continues: bool

    def route(self, upstream: UpstreamServer) -> dict[str, Any]:
        make = anthropic_route if self.anthropic else route
        return make(upstream, idle_timeout=IDLE, **self.settings)

    def reply(self) -> Reply:
        if not self.continues:
            return text_reply(*ANSWER)
        if self.anthropic:
            # Prefilled without the trailing space, Anthropic starts with one: not shown twice.
            return anthropic_text_reply(" 42", ".")
        return text_reply("42", ".")


PREFILL = Continuation("anthropic_prefill", True, {}, continues=True)
CONTINUE_FINAL = Continuation(
    "openai_continue_final_message", False, {"continuation": "continue_final_message"}, True
)
NO_CONTINUATION = Continuation("openai_without_continuation", False, {}, continues=False)
CONTINUATIONS = [PREFILL, CONTINUE_FINAL, NO_CONTINUATION]
CONTINUE_CASES = [(fault, c, "group") for fault in FAULTS for c in CONTINUATIONS] + [
    (RESET_FAULT, c, "request") for c in CONTINUATIONS
]
CONTINUE_IDS = [f"{fault.name}-{c.name}-{via}" for fault, c, via in CONTINUE_CASES]


def assistant_text(message: dict[str, Any]) -> str:
    """The text of a request's message, its content a string or (Anthropic) text blocks."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in content if block.get("type") == "text")


def assert_asked_to_continue(b: UpstreamServer, continuation: Continuation) -> None:
    body = b.requests[0].body
    last = body["messages"][-1]
    assert last["role"] == "assistant"
    if continuation.anthropic:
        assert assistant_text(last) == PARTIAL_TEXT.rstrip()  # a prefill: no trailing space
    else:
        assert assistant_text(last) == PARTIAL_TEXT
        assert body["continue_final_message"] is True
        assert body["add_generation_prompt"] is False


@pytest.mark.parametrize(("fault", "continuation", "via"), CONTINUE_CASES, ids=CONTINUE_IDS)
async def test_continue_after_output_native(
    a: UpstreamServer,
    b: UpstreamServer,
    fault: Fault,
    continuation: Continuation,
    via: str,
) -> None:
    a.script(cut_reply(fault))
    b.script(continuation.reply())
    spec = agent_spec("q", model=GROUP, options=request_options("continue", via))
    policy = group_policy("continue", via)
    with group_gateway(
        route(a, idle_timeout=IDLE), continuation.route(b), policy=policy
    ) as gateway:
        events = await run_events(gateway, spec)
        await assert_attempts(gateway, events, [("a", "failed"), ("b", "completed")])
    if not continuation.continues:  # it cannot go on: the step restarts there
        assert_restarted(events, fault, ANSWER_TEXT)
        assert b.requests[0].body["messages"][-1]["role"] == "user"
        assert "continue_final_message" not in b.requests[0].body
    else:
        kinds = types(events)
        assert "message.retracted" not in kinds
        rerouted = of_type(events, "message.rerouted")
        assert [(r["from"], r["to"], r["reason"]) for r in rerouted] == [("a", "b", fault.reason)]
        assert shown_text(events) == WHOLE_TEXT  # joined once: nothing repeated, nothing lost
        assert of_type(events, "message.completed")[0]["text"] == WHOLE_TEXT
        assert events[-1]["type"] == "run.completed"
        assert events[-1]["output"] == WHOLE_TEXT
        assert_asked_to_continue(b, continuation)
    await no_request_left_open(a, b)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize(("fault", "via"), VIA, ids=VIA_IDS)
async def test_continue_after_output_chat_completions(
    a: UpstreamServer, b: UpstreamServer, fault: Fault, via: str, stream: bool
) -> None:
    a.script(cut_reply(fault))
    b.script(CONTINUE_FINAL.reply())
    policy = group_policy("continue", via)
    with group_gateway(
        route(a, idle_timeout=IDLE), CONTINUE_FINAL.route(b), policy=policy
    ) as gateway:
        outcome = await chat(gateway, stream=stream, **request_options("continue", via))
    assert outcome.error is None
    assert outcome.text == WHOLE_TEXT
    assert_asked_to_continue(b, CONTINUE_FINAL)
    await no_request_left_open(a, b)


async def test_continue_that_the_next_route_refuses_falls_back_to_restart_on_the_one_after(
    a: UpstreamServer, b: UpstreamServer, c: UpstreamServer
) -> None:
    # Route b could continue but answers 503 before any output; route c cannot
    # continue: the partial answer is retracted there and c answers afresh.
    fault = RESET_FAULT
    a.script(cut_reply(fault))
    b.script(error_reply(503, headers={"connection": "close"}))
    c.script(text_reply(*ANSWER))
    settings = {
        "a": route(a, idle_timeout=IDLE),
        "b": CONTINUE_FINAL.route(b),
        "c": route(c, idle_timeout=IDLE),
    }
    groups = {GROUP: {"routes": ["a", "b", "c"], "policy": "continue"}}
    with running_gateway(routes=settings, groups=groups) as gateway:
        events = await run_events(gateway, agent_spec("q", model=GROUP))
        await assert_attempts(
            gateway,
            events,
            [("a", "failed"), ("b", "failed"), ("c", "completed")],
        )
    switches = [
        (e["type"], e.get("from"), e.get("to"), e["reason"])
        for e in events
        if e["type"] in ("message.rerouted", "message.retracted")
    ]
    assert switches == [
        ("message.rerouted", "a", "b", fault.reason),
        ("message.retracted", None, None, "http_503"),
        ("message.rerouted", "b", "c", "http_503"),
    ]
    assert_asked_to_continue(b, CONTINUE_FINAL)
    assert c.requests[0].body["messages"][-1]["role"] == "user"
    assert shown_text(events) == ANSWER_TEXT
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == ANSWER_TEXT
    await no_request_left_open(a, b, c)


# -- tool calls cut mid-arguments -------------------------------------------------------------


def cut_tool_call() -> Reply:
    """A calculator call whose arguments are reset halfway."""
    call = {"index": 0, "id": "call_cut", "type": "function"}
    return Reply(
        steps=[
            chat_chunk({"role": "assistant", "content": None}),
            chat_chunk(
                {"tool_calls": [{**call, "function": {"name": "calculator", "arguments": ""}}]}
            ),
            chat_chunk(
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"expression": "6*'}}]}
            ),
            RESET,
        ]
    )


# continue: a step that has output a tool call cannot be continued, so it restarts.
@pytest.mark.parametrize("policy", ["fail", "restart", "continue"])
async def test_tool_call_arguments_cut_mid_stream_are_never_run(
    a: UpstreamServer, b: UpstreamServer, policy: str
) -> None:
    # The second step goes to route a first again; its 503 sends it to b
    # (and closes the connection: none is left idle in the gateway's pool to the check).
    refused = error_reply(503, headers={"connection": "close"})
    a.script(cut_tool_call(), refused)
    b.script(
        chat_tool_reply("call_whole", "calculator", '{"expression": "6*7"}'),
        text_reply("6*7 is ", "42."),
    )
    spec = agent_spec("6*7?", ["calculator"], model=GROUP)
    with group_gateway(*routes(a, b), policy=policy) as gateway:
        events = await run_events(gateway, spec)
    started = of_type(events, "tool.started")
    assert all(e["call_id"] != "call_cut" for e in started)
    if policy == "fail":
        assert started == []
        assert events[-1]["type"] == "run.failed"
        assert b.requests == []
        await no_request_left_open(a, b)
        return
    assert [(e["call_id"], e["arguments"]) for e in started] == [
        ("call_whole", {"expression": "6*7"})
    ]
    assert [e["call_id"] for e in of_type(events, "tool.completed")] == ["call_whole"]
    assert len(of_type(events, "message.retracted")) == 1
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["output"] == "6*7 is 42."
    await no_request_left_open(a, b)


CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "arithmetic",
        "parameters": {"type": "object"},
    },
}


@pytest.mark.parametrize(
    "stream",
    [True, False],
    ids=["streamed", "whole"],
)
async def test_client_tool_call_cut_mid_arguments_is_never_handed_on_chat_completions(
    a: UpstreamServer, b: UpstreamServer, stream: bool
) -> None:
    # The client runs Chat Completions tool calls: a call it could take for whole must be.
    a.script(cut_tool_call())
    b.script(chat_tool_reply("call_whole", "calculator", '{"expression": "6*7"}'))
    with group_gateway(*routes(a, b), policy="restart") as gateway:
        outcome = await chat(gateway, stream=stream, tools=[CALCULATOR])
    await no_request_left_open(a, b)
    if stream:
        # The cut call's deltas were sent: the stream must end in an error, not finish with
        # tool_calls that include it.
        assert outcome.error is not None
        assert outcome.error.code == "output_retracted"
        assert outcome.finish_reason is None
        return
    assert outcome.error is None
    assert outcome.finish_reason == "tool_calls"
    assert [(c["id"], c["function"]["arguments"]) for c in outcome.tool_calls] == [
        ("call_whole", '{"expression": "6*7"}')
    ]


# -- every route failing after output ---------------------------------------------------------


EXHAUSTED = (
    "every route of model group 'smart' failed: "
    f"a: the upstream idle timeout ({IDLE}s) passed; "
    "b: the upstream stream ended before the response was complete"
)


@pytest.mark.parametrize("face", ["native", "chat_completions_whole"])
async def test_every_route_failing_after_output_names_each_attempt(
    a: UpstreamServer, b: UpstreamServer, face: str
) -> None:
    stall, no_done = FAULTS[0], FAULTS[3]
    a.script(cut_reply(stall))
    b.script(cut_reply(no_done))  # the last route cut as well
    with group_gateway(*routes(a, b), policy="restart") as gateway:
        if face == "native":
            events = await run_events(gateway, agent_spec("q", model=GROUP))
            snapshot = await gateway.wait_run(events[0]["run_id"])
        else:
            outcome = await chat(gateway, stream=False)
    await no_request_left_open(a, b)
    if face != "native":
        assert outcome.error is not None
        assert getattr(outcome.error, "status_code", None) == 502
        assert outcome.error.code == "upstream_exhausted"
        assert isinstance(outcome.error.body, dict)
        assert outcome.error.body["message"] == EXHAUSTED
        return
    assert "message.completed" not in types(events)
    assert len(of_type(events, "message.retracted")) == 1  # route a's partial answer
    error = of_type(events, "message.failed")[0]["error"]
    assert error == {"code": "upstream_exhausted", "message": EXHAUSTED}
    assert events[-1]["type"] == "run.failed"
    assert events[-1]["error"]["code"] == "upstream_exhausted"
    attempts = snapshot["producers"][0]["attempts"]
    assert [(a["route"], a["outcome"], a["reason"]) for a in attempts] == [
        ("a", "failed", stall.reason),
        ("b", "failed", no_done.reason),
    ]
