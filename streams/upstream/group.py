"""Model groups: one model name clients use, served by an ordered list of routes, and what
happens when one of them fails.

A step on a group is first a **race for the first output**. Its first route is started
(routes in their order, or shuffled by their weights; a route resting after a 429's
``Retry-After`` goes last). A route that fails before its first output (refused, reset,
an error status, its circuit open, a first token slower than its ``first_token_timeout``,
an answer that is no event stream, an empty one) is left for the next one at once, without
its own retries. With ``hedge_after``, a route still silent after that long has the next
one started beside it; the first to speak wins and the others are cancelled, which closes
their upstream requests. None of this shows in the answer: the client hears of it only
through :class:`~streams.models.Rerouted`.

Once output has started, a failure (a cut, a stall past ``idle_timeout``, a malformed
chunk) is the group's **policy**'s, or the request's ``"failover"`` option's::

    racing ──first output──▶ streaming ──end──▶ done        (Attempt "completed")
      ▲  │                      │
      │  └─ every route failed: RoutesExhaustedError (naming each attempt)
      │                         │ failed after output
      │                         ├─ fail ─────▶ the error, as a single route's (message.failed)
      ├─────────────────────────┼─ restart ──▶ Retracted, the next routes race afresh
      └─────────────────────────┴─ continue ─▶ the next route is asked to go on after the
                                               answer so far (Rerouted, no retraction); one
                                               that cannot continue: restart

Every try ends with an :class:`~streams.models.Attempt` for the run's state. The group's
output items are the producer's to turn into events (``message.rerouted``,
``message.retracted``); cut tool-call arguments are never run, because a failed or
retracted step hands no tool calls on.

The race is the only place with tasks: one per racing route, in a task group that never
spans a ``yield``; each reads its route's stream up to the first output and hands the
suspended stream to the winner's reader (the step's task), which reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace

from streams.cleanup import finish_shielded
from streams.errors import (
    CircuitOpenError,
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
    Model,
    ModelOutput,
    Rerouted,
    Retracted,
    TextDelta,
    Usage,
)
from streams.spec import FAILOVER_OPTION, FAILOVER_POLICIES, FailoverPolicy
from streams.upstream.client import CLOSE_TIMEOUT, UpstreamModel

__all__ = [
    "MAX_GROUP_ROUTES",
    "MAX_REST",
    "GroupModel",
    "GroupObserver",
    "ModelGroup",
    "failover_reason",
    "route_order",
    "switches_on",
]

MAX_GROUP_ROUTES = 16
MAX_REST = 300.0  # seconds at most a route rests after a Retry-After
MAX_ERROR_IN_SUMMARY = 300  # characters of each attempt's error in the exhausted error

# Statuses that say the request is wrong, not the route: every route would say the same.
_REQUEST_FAULTS = frozenset({400, 413, 422})


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """A model name served by ``routes`` (served model names, tried in order unless
    ``weights`` spread the first choice), with its after-output ``policy`` and, if set,
    ``hedge_after``: seconds without a first token before the next route is started too."""

    name: str
    routes: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    policy: FailoverPolicy = "fail"
    hedge_after: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.routes) <= MAX_GROUP_ROUTES:
            raise ValueError(
                f"model group {self.name!r}: 1 to {MAX_GROUP_ROUTES} routes, not {len(self.routes)}"
            )
        if len(set(self.routes)) != len(self.routes):
            raise ValueError(f"model group {self.name!r}: a route is named twice")
        if self.weights is not None and (
            len(self.weights) != len(self.routes) or not all(w > 0 for w in self.weights)
        ):
            raise ValueError(
                f"model group {self.name!r}: weights must be one positive number per route"
            )
        if self.policy not in FAILOVER_POLICIES:
            raise ValueError(
                f"model group {self.name!r}: policy must be one of {list(FAILOVER_POLICIES)}"
            )
        if self.hedge_after is not None and not self.hedge_after > 0:
            raise ValueError(f"model group {self.name!r}: hedge_after must be positive")


class GroupObserver(Protocol):
    """Told of every switch a group makes (the gateway counts them)."""

    def rerouted(self, group: str, route: str, to: str, reason: str) -> None:
        """The step left ``route`` for ``to`` because of ``reason``."""


def switches_on(exc: BaseException) -> bool:
    """Whether a failure is one another route may not have: every upstream failure but an
    error status that says the request itself is wrong (400, 413, 422)."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status not in _REQUEST_FAULTS
    return isinstance(exc, UpstreamError)


def failover_reason(exc: BaseException) -> str:
    """Why a route was left, as ``message.rerouted`` and the metrics say it: ``http_<status>``,
    ``<phase>_timeout`` (connect, first_token, idle, total), ``circuit_open``,
    ``unavailable`` (refused, reset), ``protocol`` (not an event stream, a malformed chunk),
    ``stream_broken`` (cut short, empty, an error inside it); another error's code."""
    if isinstance(exc, UpstreamStatusError):
        return f"http_{exc.status}"
    if isinstance(exc, UpstreamTimeoutError):
        return f"{exc.phase}_timeout"
    for kind, reason in (
        (CircuitOpenError, "circuit_open"),
        (UpstreamUnavailableError, "unavailable"),
        (UpstreamProtocolError, "protocol"),
        (UpstreamStreamError, "stream_broken"),
    ):
        if isinstance(exc, kind):
            return reason
    return getattr(exc, "code", "error")


def route_order(
    routes: Sequence[str],
    weights: Sequence[float] | None,
    rand: Callable[[], float] = random.random,
) -> list[str]:
    """The order to try ``routes`` in: as given, or a weighted shuffle (each route first with
    the probability of its share of the weights; Efraimidis-Spirakis keys)."""
    if weights is None:
        return list(routes)
    keys = [(rand() ** (1.0 / weight), index) for index, weight in enumerate(weights)]
    return [routes[index] for _, index in sorted(keys, reverse=True)]


@dataclass(slots=True)
class _Try:
    """One route's try at the step, up to its first output (then its stream goes on)."""

    model: Model
    stream: AsyncGenerator[ModelOutput, None]
    started_at: float
    held: list[ModelOutput] = field(default_factory=list)  # to pass on: usage, then output
    first_at: float | None = None
    ended: bool = False  # its stream ended at or before its first output
    error: Exception | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def name(self) -> str:
        return self.model.name

    async def first(self) -> None:
        """Read up to the first output (anything but usage) or the end. Never raises but
        when cancelled: a failure is kept in :attr:`error`."""
        usage: Usage | None = None
        try:
            while True:
                item = await anext(self.stream)
                if isinstance(item, Usage):
                    # Folded into one: usage before the first output has no bound of its own.
                    self.count(item)
                    usage = item if usage is None else _sum(usage, item)
                    continue
                self.first_at = time.monotonic()
                self.held = [item] if usage is None else [usage, item]
                return
        except StopAsyncIteration:
            self.ended = True
            self.held = [] if usage is None else [usage]
        except Exception as exc:  # handed to the race, which decides; never lost
            self.error = exc

    def count(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens

    def attempt(self, outcome: str, error: BaseException | None = None) -> Attempt:
        return Attempt(
            route=self.name,
            outcome=outcome,
            reason=failover_reason(error) if error is not None else None,
            error=str(error) if error is not None else None,
            ttft=None if self.first_at is None else self.first_at - self.started_at,
            duration=time.monotonic() - self.started_at,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )


@dataclass(slots=True)
class _Race:
    """How a race ended: its winner (``None`` if it has none), what to pass on before the
    winner's output (switches and ended tries), and otherwise why not: an error to raise,
    every route failed, or, in a continuation, the route to leave for a restart."""

    winner: _Try | None = None
    notes: list[Rerouted | Attempt] = field(default_factory=list)
    error: BaseException | None = None  # a failure no other route would mend
    exhausted: bool = False  # every route failed
    restart_from: tuple[str, str] | None = None  # (route, reason): cannot continue there


class GroupModel(Model):
    """A :class:`ModelGroup` as a model: every face takes its name where it takes a route's."""

    def __init__(
        self,
        group: ModelGroup,
        members: Mapping[str, Model],
        *,
        observer: GroupObserver | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        missing = [name for name in group.routes if name not in members]
        if missing:
            raise ValueError(f"model group {group.name!r}: no route named {missing[0]!r}")
        self.name = group.name
        self.group = group
        self.members = {name: members[name] for name in group.routes}
        self.observer = observer
        self.description = f"model group: {', '.join(group.routes)} ({group.policy})"
        self._rand = rand
        self._resting: dict[str, float] = {}  # route -> until when (time.monotonic)

    def order(self) -> list[Model]:
        """The routes to try for the next step, in order: a route resting after a
        ``Retry-After`` goes after the others."""
        now = time.monotonic()
        names = route_order(self.group.routes, self.group.weights, self._rand)
        awake = [name for name in names if self._resting.get(name, 0.0) <= now]
        resting = [name for name in names if name not in awake]
        return [self.members[name] for name in awake + resting]

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> int | None:
        """The first route's count that answers; the last failure if none does."""
        failure: UpstreamError | None = None
        for model in self.order():
            try:
                return await model.count_tokens(messages, tools, options)
            except UpstreamError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        options = dict(options or {})
        policy: FailoverPolicy = options.pop(FAILOVER_OPTION, None) or self.group.policy
        pending = deque(self.order())
        attempts: list[Attempt] = []
        text: list[str] = []  # the answer's text so far, what a continuation goes on after
        other_output = False  # reasoning or tool calls shown: no continuation possible
        prefix: str | None = None
        while True:
            race = await self._race(pending, messages, tools, options, prefix)
            attempts.extend(note for note in race.notes if isinstance(note, Attempt))
            winner = race.winner
            if winner is None:
                for note in race.notes:
                    yield self._noted(note)
                if race.exhausted:
                    raise self._exhausted(attempts)
                if race.restart_from is None:
                    assert race.error is not None
                    raise race.error
                # A continuation cannot go on here: the answer so far is void.
                route, reason = race.restart_from
                yield Retracted(reason)
                text.clear()
                other_output, prefix = False, None
                yield self._noted(Rerouted(route, pending[0].name, reason))
                continue
            failure: UpstreamError | None = None
            # Entered before anything is passed on: a step that stops reading here still
            # closes the winner's upstream at once.
            async with contextlib.aclosing(winner.stream) as rest:
                for note in race.notes:
                    yield self._noted(note)
                try:
                    for item in winner.held:
                        if isinstance(item, TextDelta):
                            text.append(item.text)
                        elif not isinstance(item, Usage):
                            other_output = True
                        yield item
                    if not winner.ended:
                        async for item in rest:
                            if isinstance(item, TextDelta):
                                text.append(item.text)
                            elif isinstance(item, Usage):
                                winner.count(item)
                            else:
                                other_output = True
                            yield item
                except UpstreamError as exc:
                    failure = exc
                except Exception as exc:
                    yield self._noted(winner.attempt("failed", exc))
                    raise
            if failure is None:
                yield self._noted(winner.attempt("completed"))
                return
            attempt = winner.attempt("failed", failure)
            attempts.append(attempt)
            yield self._noted(attempt)
            if policy == "fail":
                raise failure
            if not pending:
                raise self._exhausted(attempts)
            reason = failover_reason(failure)
            if policy == "continue" and text and not other_output and _continues(pending[0]):
                prefix = "".join(text)
            else:
                yield Retracted(reason)
                text.clear()
                other_output, prefix = False, None
            yield self._noted(Rerouted(winner.name, pending[0].name, reason))

    async def _race(
        self,
        pending: deque[Model],
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        prefix: str | None,
    ) -> _Race:
        """Start ``pending``'s routes (taking them off it) until one gives its first output;
        see the module's docstring. A continuation (``prefix``) is never hedged."""
        race = _Race()
        hedge_after = self.group.hedge_after if prefix is None else None
        racing: dict[asyncio.Task[None], _Try] = {}
        tries: list[_Try] = []
        current: _Try | None = None  # the route the step is on, for the switches it notes
        try:
            async with asyncio.TaskGroup() as tasks:

                def start() -> _Try:
                    model = pending.popleft()
                    attempt = _Try(model, self._open(model, messages, tools, options, prefix), 0.0)
                    attempt.started_at = time.monotonic()
                    tries.append(attempt)
                    racing[tasks.create_task(attempt.first(), name=f"race {model.name}")] = attempt
                    return attempt

                current = start()
                next_hedge = None if hedge_after is None else time.monotonic() + hedge_after
                while True:
                    timeout = None
                    if next_hedge is not None and pending:
                        timeout = max(0.0, next_hedge - time.monotonic())
                    done, _ = await asyncio.wait(
                        racing, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:  # still silent: the next route is started beside it
                        start()
                        assert hedge_after is not None
                        next_hedge = time.monotonic() + hedge_after
                        continue
                    failed: _Try | None = None  # the last try of this wakeup that failed
                    current_failed = False
                    # In the order they were started: of two that spoke at once, the first.
                    for task in sorted(done, key=lambda task: tries.index(racing[task])):
                        attempt = racing.pop(task)
                        if attempt.error is None:
                            race.winner = attempt
                            break
                        error = attempt.error
                        race.notes.append(attempt.attempt("failed", error))
                        self._rest(attempt.name, error)
                        if not switches_on(error):
                            race.error = error
                            break
                        failed = attempt
                        current_failed = current_failed or attempt is current
                    if race.error is not None:
                        break
                    if current_failed and (race.winner is not None or racing):
                        # The step goes on with a try already racing (a hedge).
                        assert current is not None
                        assert current.error is not None
                        successor = race.winner or min(racing.values(), key=tries.index)
                        race.notes.append(
                            Rerouted(current.name, successor.name, failover_reason(current.error))
                        )
                        current = successor
                    if race.winner is not None:
                        break
                    if racing:
                        continue
                    assert failed is not None
                    assert failed.error is not None
                    reason = failover_reason(failed.error)
                    if not pending:
                        race.exhausted = True
                        break
                    if prefix is not None and not _continues(pending[0]):
                        race.restart_from = (failed.name, reason)
                        break
                    race.notes.append(Rerouted(failed.name, pending[0].name, reason))
                    current = start()
                    if hedge_after is not None:
                        next_hedge = time.monotonic() + hedge_after
                for task in racing:
                    task.cancel()
        finally:
            # Every try but the winner is closed now, whichever way the race ended: a try
            # whose first output came just as another won is suspended, its response open.
            for attempt in tries:
                if attempt is not race.winner:
                    await finish_shielded(
                        attempt.stream.aclose(), timeout=CLOSE_TIMEOUT, name="close-lost-try"
                    )
        winner = race.winner
        if winner is not None:
            for attempt in racing.values():  # beaten, or failed just as another won
                late = attempt.error
                race.notes.append(
                    attempt.attempt("failed", late) if late else attempt.attempt("lost")
                )
            if current is not None and current is not winner:
                why = "hedge" if current.error is None else failover_reason(current.error)
                race.notes.append(Rerouted(current.name, winner.name, why))
        return race

    def _open(
        self,
        model: Model,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        prefix: str | None,
    ) -> AsyncGenerator[ModelOutput, None]:
        if isinstance(model, UpstreamModel):
            # One try per route: the group moves on rather than wait to try it again.
            return model.stream(messages, tools, options, retry=False, prefix=prefix)
        assert prefix is None  # only a route that continues is asked to
        return model.stream(messages, tools, options)

    def _rest(self, route: str, error: BaseException) -> None:
        """A route that said when to come back (``Retry-After``) goes last until then."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            self._resting[route] = time.monotonic() + min(retry_after, MAX_REST)

    def _noted(self, item: Rerouted | Attempt) -> Rerouted | Attempt:
        """``item``, told to the observer and the step's span first."""
        if isinstance(item, Rerouted):
            if self.observer is not None:
                self.observer.rerouted(self.name, item.from_route, item.to_route, item.reason)
            trace.get_current_span().add_event(
                "gateway.rerouted",
                {
                    "gateway.group": self.name,
                    "gateway.route.from": item.from_route,
                    "gateway.route.to": item.to_route,
                    "gateway.failover.reason": item.reason,
                },
            )
        return item

    def _exhausted(self, attempts: list[Attempt]) -> RoutesExhaustedError:
        tried = "; ".join(
            f"{attempt.route}: {(attempt.error or attempt.outcome)[:MAX_ERROR_IN_SUMMARY]}"
            for attempt in attempts
        )
        return RoutesExhaustedError(
            f"every route of model group {self.name!r} failed: {tried}",
            [attempt.to_dict() for attempt in attempts],
        )


def _continues(model: Model) -> bool:
    return isinstance(model, UpstreamModel) and model.continuation is not None


def _sum(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
        a.cache_write_tokens + b.cache_write_tokens,
    )
