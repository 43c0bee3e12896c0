"""Model groups (streams.upstream.group): the race for the first output, hedging, and the
after-output policies, on scripted models (the real upstreams: tests/failover/)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pytest

from streams.errors import (
    CircuitOpenError,
    InvalidRequestError,
    RoutesExhaustedError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from streams.models import (
    Attempt,
    Finish,
    Model,
    ModelOutput,
    Rerouted,
    Retracted,
    TextDelta,
    ToolCallStart,
    Usage,
)
from streams.upstream.group import (
    GroupModel,
    ModelGroup,
    failover_reason,
    route_order,
    switches_on,
)

MESSAGES = [{"role": "user", "content": "hi"}]

# A step of a scripted stream: an item to yield, an error to raise, or an event to wait for.
Step = ModelOutput | Exception | asyncio.Event


class Script(Model):
    """A model whose n-th stream plays ``streams[n]``, noting what each was asked and
    whether it was closed."""

    def __init__(self, name: str, *streams: Sequence[Step]) -> None:
        self.name = name
        self.streams = [list(steps) for steps in streams]
        self.options: list[dict[str, Any]] = []
        self.started = 0
        self.closed = 0
        self.opened = asyncio.Event()  # a stream was started
        self.ended = asyncio.Event()  # a stream was closed

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        steps = self.streams[min(self.started, len(self.streams) - 1)]
        self.started += 1
        self.opened.set()
        self.options.append(dict(options or {}))
        try:
            for step in steps:
                if isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, Exception):
                    raise step
                else:
                    yield step
        finally:
            self.closed += 1
            self.ended.set()


def answer(*parts: str) -> list[Step]:
    return [*(TextDelta(part) for part in parts), Finish("stop")]


def group(*members: Script, **fields: Any) -> GroupModel:
    config = ModelGroup("smart", tuple(member.name for member in members), **fields)
    return GroupModel(config, {member.name: member for member in members})


async def play(model: Model, options: Mapping[str, Any] | None = None) -> list[ModelOutput]:
    return [item async for item in model.stream(MESSAGES, [], options)]


def text_of(items: Sequence[ModelOutput]) -> str:
    """The answer a client keeps: the text after the last retraction."""
    kept: list[str] = []
    for item in items:
        if isinstance(item, Retracted):
            kept.clear()
        elif isinstance(item, TextDelta):
            kept.append(item.text)
    return "".join(kept)


def notes(items: Sequence[ModelOutput]) -> list[ModelOutput]:
    return [item for item in items if isinstance(item, Rerouted | Retracted)]


def outcomes(items: Sequence[ModelOutput]) -> list[tuple[str, str, str | None]]:
    return [(a.route, a.outcome, a.reason) for a in items if isinstance(a, Attempt)]


def unavailable() -> UpstreamUnavailableError:
    return UpstreamUnavailableError("the upstream connection failed: ConnectError")


# -- the pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UpstreamStatusError(503, "x"), "http_503"),
        (UpstreamStatusError(429, "x"), "http_429"),
        (UpstreamTimeoutError("first_token", 1), "first_token_timeout"),
        (UpstreamTimeoutError("idle", 1), "idle_timeout"),
        (UpstreamTimeoutError("connect", 1), "connect_timeout"),
        (CircuitOpenError("open"), "circuit_open"),
        (UpstreamUnavailableError("refused"), "unavailable"),
        (UpstreamProtocolError("html"), "protocol"),
        (UpstreamStreamError("cut"), "stream_broken"),
        (RoutesExhaustedError("all", []), "upstream_exhausted"),
        (ValueError("bug"), "error"),
    ],
)
def test_a_failure_is_named_by_why_the_route_was_left(error: Exception, reason: str) -> None:
    assert failover_reason(error) == reason


@pytest.mark.parametrize(
    ("error", "switches"),
    [
        (UpstreamStatusError(400, "bad request"), False),
        (UpstreamStatusError(413, "too large"), False),
        (UpstreamStatusError(422, "unprocessable"), False),
        (UpstreamStatusError(401, "bad key"), True),
        (UpstreamStatusError(404, "no such model"), True),
        (UpstreamStatusError(429, "slow down"), True),
        (UpstreamStatusError(500, "oops"), True),
        (UpstreamTimeoutError("first_token", 1), True),
        (UpstreamProtocolError("html"), True),
        (InvalidRequestError("the request's own fault"), False),
    ],
)
def test_only_a_failure_another_route_may_not_have_switches(
    error: Exception, switches: bool
) -> None:
    assert switches_on(error) is switches


def test_routes_are_tried_in_their_order_without_weights() -> None:
    assert route_order(["a", "b", "c"], None) == ["a", "b", "c"]


def test_weights_make_each_route_first_by_its_share() -> None:
    rand = random.Random(19).random
    firsts = [route_order(["a", "b"], [3.0, 1.0], rand)[0] for _ in range(4000)]
    assert 0.72 < firsts.count("a") / len(firsts) < 0.78


def test_a_weighted_order_holds_every_route_once() -> None:
    rand = random.Random(7).random
    for _ in range(100):
        assert sorted(route_order(["a", "b", "c"], [1.0, 5.0, 0.5], rand)) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"routes": ()}, "1 to 16 routes"),
        ({"routes": tuple(f"r{i}" for i in range(17))}, "1 to 16 routes"),
        ({"routes": ("a", "a")}, "named twice"),
        ({"routes": ("a", "b"), "weights": (1.0,)}, "one positive number per route"),
        ({"routes": ("a", "b"), "weights": (1.0, 0.0)}, "one positive number per route"),
        ({"routes": ("a",), "policy": "retry"}, "policy must be one of"),
        ({"routes": ("a",), "hedge_after": 0.0}, "hedge_after must be positive"),
    ],
)
def test_a_group_that_cannot_work_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelGroup("smart", **fields)


def test_a_group_of_a_route_not_served_is_refused() -> None:
    with pytest.raises(ValueError, match="no route named 'b'"):
        GroupModel(ModelGroup("smart", ("a", "b")), {"a": Script("a")})


# -- before output: the race ----------------------------------------------------------------


async def test_a_route_that_fails_before_output_is_left_for_the_next() -> None:
    a = Script("a", [UpstreamStatusError(503, "the upstream answered 503")])
    b = Script("b", answer("Hello", " from b"))

    items = await play(group(a, b))

    assert text_of(items) == "Hello from b"
    assert notes(items) == [Rerouted("a", "b", "http_503")]
    assert outcomes(items) == [("a", "failed", "http_503"), ("b", "completed", None)]
    assert (a.closed, b.closed) == (1, 1)


async def test_the_first_route_that_answers_is_the_only_one_asked() -> None:
    a, b = Script("a", answer("Hi")), Script("b", answer("unused"))

    items = await play(group(a, b))

    assert text_of(items) == "Hi"
    assert notes(items) == []
    assert b.started == 0


async def test_a_failure_of_the_request_itself_is_not_switched_on() -> None:
    a = Script("a", [UpstreamStatusError(400, "the upstream answered 400: bad tool schema")])
    b = Script("b", answer("unused"))

    with pytest.raises(UpstreamStatusError, match="bad tool schema"):
        await play(group(a, b))
    assert b.started == 0


async def test_every_route_failing_is_one_error_naming_each_attempt() -> None:
    a = Script("a", [UpstreamStatusError(503, "the upstream answered 503: busy")])
    b = Script("b", [UpstreamTimeoutError("first_token", 0.5)])

    with pytest.raises(RoutesExhaustedError) as failed:
        await play(group(a, b))

    message = str(failed.value)
    assert message.startswith("every route of model group 'smart' failed: ")
    assert "a: the upstream answered 503: busy; b: the upstream first_token timeout" in message
    assert [(t["route"], t["reason"]) for t in failed.value.attempts] == [
        ("a", "http_503"),
        ("b", "first_token_timeout"),
    ]


async def test_usage_before_the_first_output_goes_with_the_winner_only() -> None:
    a = Script("a", [Usage(input_tokens=7), unavailable()])
    b = Script("b", [Usage(input_tokens=5), Usage(output_tokens=1), *answer("ok")])

    items = await play(group(a, b))

    assert [item for item in items if isinstance(item, Usage)] == [Usage(5, 1)]
    tries = {a.route: a for a in items if isinstance(a, Attempt)}
    assert (tries["a"].input_tokens, tries["b"].input_tokens) == (7, 5)


async def test_a_stream_that_ends_without_output_is_an_answer_of_its_own() -> None:
    # A model may say nothing: only the upstream client knows that an empty stream is
    # broken (it raises, and the group switches).
    a, b = Script("a", [Finish("stop")]), Script("b", answer("unused"))

    items = await play(group(a, b))

    assert items[0] == Finish("stop")
    assert b.started == 0


async def test_a_route_that_said_when_to_come_back_goes_last_until_then() -> None:
    busy = UpstreamStatusError(429, "the upstream answered 429", retry_after=60)
    a = Script("a", [busy], answer("a again"))
    b = Script("b", answer("b"), answer("b again"))
    model = group(a, b)
    await play(model)

    items = await play(model)

    assert text_of(items) == "b again"
    assert a.started == 1


async def test_the_group_policy_is_not_sent_to_its_routes() -> None:
    a = Script("a", answer("ok"))

    await play(group(a), {"failover": "restart", "temperature": 0.5})

    assert a.options == [{"temperature": 0.5}]


# -- hedging ----------------------------------------------------------------------------------


async def test_a_silent_route_has_the_next_started_beside_it_and_the_first_to_speak_wins() -> None:
    never = asyncio.Event()
    a = Script("a", [never, *answer("late")])
    b = Script("b", answer("Hedged", " answer"))

    items = await play(group(a, b, hedge_after=0.01))

    assert text_of(items) == "Hedged answer"
    assert notes(items) == [Rerouted("a", "b", "hedge")]
    assert outcomes(items) == [("a", "lost", None), ("b", "completed", None)]
    assert a.closed == 1  # the loser's stream (its upstream request) is closed


async def test_a_route_that_speaks_before_the_hedge_delay_is_not_hedged() -> None:
    a, b = Script("a", answer("fast")), Script("b", answer("unused"))

    items = await play(group(a, b, hedge_after=30.0))

    assert text_of(items) == "fast"
    assert b.started == 0


async def test_a_hedged_route_that_fails_leaves_the_other_racing() -> None:
    gate = asyncio.Event()
    a = Script("a", [gate, *answer("primary")])
    b = Script("b", [unavailable()])
    model = group(a, b, hedge_after=0.01)

    async def open_gate_once_b_failed() -> None:
        await b.ended.wait()
        gate.set()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(open_gate_once_b_failed())
        items = await play(model)

    assert text_of(items) == "primary"
    assert notes(items) == []
    assert outcomes(items) == [("b", "failed", "unavailable"), ("a", "completed", None)]


async def test_a_primary_that_fails_while_its_hedge_races_hands_the_step_to_the_hedge() -> None:
    gate = asyncio.Event()
    a = Script("a", [gate, unavailable()])
    b = Script("b", [gate, *answer("hedge")])
    model = group(a, b, hedge_after=0.01)

    async def open_gate_once_both_started() -> None:
        await b.opened.wait()
        gate.set()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(open_gate_once_both_started())
        items = await play(model)

    assert text_of(items) == "hedge"
    assert notes(items) == [Rerouted("a", "b", "unavailable")]


async def test_a_cancelled_race_closes_every_route_it_started() -> None:
    never = asyncio.Event()
    a, b = Script("a", [never]), Script("b", [never])
    model = group(a, b, hedge_after=0.01)
    step = asyncio.ensure_future(play(model))
    await b.opened.wait()

    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step

    assert (a.closed, b.closed) == (1, 1)


# -- after output: the policies ------------------------------------------------------------


def cut_after_output() -> list[Step]:
    return [TextDelta("Hel"), TextDelta("lo"), UpstreamTimeoutError("idle", 0.3)]


async def test_fail_ends_the_step_with_the_routes_error() -> None:
    a, b = Script("a", cut_after_output()), Script("b", answer("unused"))

    with pytest.raises(UpstreamTimeoutError, match="idle"):
        await play(group(a, b, policy="fail"))
    assert b.started == 0


async def test_restart_retracts_the_partial_answer_then_asks_the_next_route() -> None:
    a, b = Script("a", cut_after_output()), Script("b", answer("Hello", " again"))

    items = await play(group(a, b, policy="restart"))

    assert notes(items) == [Retracted("idle_timeout"), Rerouted("a", "b", "idle_timeout")]
    assert text_of(items) == "Hello again"
    assert outcomes(items) == [("a", "failed", "idle_timeout"), ("b", "completed", None)]


async def test_continue_on_a_route_that_cannot_restarts() -> None:
    # Only an upstream route with a continuation can go on after a prefix.
    a, b = Script("a", cut_after_output()), Script("b", answer("Hello", " again"))

    items = await play(group(a, b, policy="continue"))

    assert notes(items) == [Retracted("idle_timeout"), Rerouted("a", "b", "idle_timeout")]
    assert text_of(items) == "Hello again"


async def test_the_request_option_overrides_the_group_policy() -> None:
    a, b = Script("a", cut_after_output()), Script("b", answer("Hello", " again"))

    items = await play(group(a, b, policy="fail"), {"failover": "restart"})

    assert text_of(items) == "Hello again"


async def test_restart_with_no_route_left_is_every_route_failing() -> None:
    a = Script("a", cut_after_output())
    b = Script("b", [TextDelta("Hi"), UpstreamStreamError("cut")])

    with pytest.raises(RoutesExhaustedError, match="a: the upstream idle timeout"):
        await play(group(a, b, policy="restart"))


async def test_a_restart_voids_tool_calls_the_cut_answer_started() -> None:
    a = Script("a", [ToolCallStart(0, "calculator", "call_a"), unavailable()])
    b = Script("b", answer("no tools"))

    items = await play(group(a, b, policy="restart"))

    assert items.index(Retracted("unavailable")) > items.index(
        ToolCallStart(0, "calculator", "call_a")
    )
    assert text_of(items) == "no tools"


async def test_an_error_that_is_not_the_upstreams_is_raised_as_it_is() -> None:
    a = Script("a", [TextDelta("Hi"), RuntimeError("a bug")])
    b = Script("b", answer("unused"))

    with pytest.raises(RuntimeError, match="a bug"):
        await play(group(a, b, policy="restart"))
    assert b.started == 0


async def test_a_group_counts_tokens_with_its_first_route_that_can() -> None:
    class Counting(Script):
        async def count_tokens(self, *args: Any, **kwargs: Any) -> int | None:
            if self.name == "a":
                raise UpstreamError("a is down")
            return 42

    model = GroupModel(
        ModelGroup("smart", ("a", "b")), {"a": Counting("a", []), "b": Counting("b", [])}
    )

    assert await model.count_tokens(MESSAGES, []) == 42
