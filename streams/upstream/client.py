"""Upstream models over httpx: one :class:`UpstreamModel` per configured route.

What differs between upstream APIs (the request, the stream's events) is the route's
provider's (:mod:`streams.upstream.provider`); what is here is the same for all of them.
Per route: a limiter bounds requests in flight; a circuit breaker answers at once while the
upstream is down; timeouts are per phase (connect, first token, idle between chunks, total);
retries with exponential backoff and full jitter happen only before the first byte of output
(on connection errors, 429 and 5xx, honouring ``Retry-After``). After output has started, a
failure ends the producer with a typed error: a replay would duplicate text already shown.

Cancellation reaches the upstream: the response is closed in ``finally`` (shielded, so a
second cancel cannot skip it), whether the run is cancelled while waiting for the first
token, mid-stream, or during a back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import inject

from streams.cleanup import finish_shielded
from streams.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from streams.events import dumps
from streams.limiter import CountedLimiter
from streams.models import Model, ModelOutput, TextDelta, Usage
from streams.spec import FAILOVER_OPTION
from streams.upstream.breaker import CircuitBreaker
from streams.upstream.http import USER_AGENT
from streams.upstream.registry import provider_for

# Where they were defined before streams.upstream.route: the gateway imports them from here.
from streams.upstream.route import RetryPolicy, Route
from streams.upstream.sse import SSEDecoder, SSELimitError
from streams.watchdog import Watchdog

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_ERROR_BODY",
    "REST_TIMEOUT",
    "RouteStatistics",
    "UpstreamCall",
    "UpstreamModel",
    "UpstreamObserver",
    "backoff_delay",
    "continuation_input",
    "error_message",
    "retry_after_seconds",
]

CLOSE_TIMEOUT = 2.0  # seconds the shielded close of an upstream response may take
MAX_ERROR_BODY = 4096
REST_TIMEOUT = 0.05  # seconds to read the end of a body after the answer is complete


@dataclass(frozen=True, slots=True)
class RouteStatistics:
    """What a route's requests did, and what its limit holds now."""

    requests: int
    attempts: int
    retries: int
    failures: int
    in_flight: int
    waiting: int
    slot_waits: int  # requests that had to wait for a slot (max_in_flight)
    last_ttft: float | None


@dataclass(slots=True)
class _Counts:
    """The counters behind :class:`RouteStatistics` (the limiter keeps the rest)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    last_ttft: float | None = None


@dataclass(slots=True)
class UpstreamCall:
    """What one request to an upstream did (one per attempt), for logs and metrics."""

    route: str
    provider: str
    upstream_model: str
    attempt: int
    status: int | None = None
    ttft: float | None = None  # seconds from sending the request to the first output
    duration: float = 0.0
    error: str | None = None  # the error code, or "cancelled"
    input_tokens: int = 0
    output_tokens: int = 0


class UpstreamObserver(Protocol):
    """Told about every upstream call (the gateway feeds logs, metrics from it)."""

    def chunk_gap(self, route: str, seconds: float) -> None:
        """Seconds between two chunks of a stream that has started."""

    def call_finished(self, call: UpstreamCall) -> None:
        """One request ended (successfully or not)."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the asctime form: HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def backoff_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: float | None,
    rand: Callable[[float, float], float] = random.uniform,
) -> float:
    """Full-jitter exponential backoff after ``attempt`` failed, at least ``Retry-After``."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    delay = rand(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return delay


class UpstreamModel(Model):
    """A :class:`~streams.models.Model` served by an upstream provider."""

    def __init__(
        self,
        route: Route,
        transport: httpx.AsyncBaseTransport,
        *,
        observer: UpstreamObserver | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.name = route.name
        self.observer = observer
        self.tracer = tracer or trace.NoOpTracer()
        self.description = f"{route.provider} route to {route.upstream_model}"
        self.route = route
        self.transport = transport  # see streams.upstream.http
        self.breaker = CircuitBreaker(
            route.name,
            failure_threshold=route.failure_threshold,
            reset_timeout=route.reset_timeout,
        )
        self._counts = _Counts()
        self._slots = CountedLimiter(route.max_in_flight)
        self._provider = provider_for(route.provider)
        continuation = route.continuation
        if continuation == "auto":
            continuation = self._provider.default_continuation
        if continuation is not None and continuation not in self._provider.continuations:
            raise ValueError(
                f"route {route.name!r}: {route.provider!r} cannot continue an answer by "
                f"{continuation!r} (it can by {list(self._provider.continuations)})"
            )
        # How a model group can ask this route to go on with a partial answer (None: never).
        self.continuation = continuation
        # What every request of the route shares, made once.
        endpoint = self._provider.endpoint(route)
        headers = {
            "accept": "text/event-stream",
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        headers.update(route.headers)
        headers.update(endpoint.headers)
        self._url = endpoint.url
        self._headers = headers
        self._http_timeouts = httpx.Timeout(
            connect=route.timeouts.connect, read=None, write=route.timeouts.connect, pool=None
        ).as_dict()

    def statistics(self) -> RouteStatistics:
        """The route's counts so far and what its ``max_in_flight`` limit holds now."""
        counts = self._counts
        slots = self._slots.statistics()
        return RouteStatistics(
            requests=counts.requests,
            attempts=counts.attempts,
            retries=counts.retries,
            failures=counts.failures,
            in_flight=slots.borrowed_tokens,
            waiting=slots.tasks_waiting,
            slot_waits=slots.waits,
            last_ttft=counts.last_ttft,
        )

    def _request(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        trace_headers: Mapping[str, str],
    ) -> httpx.Request:
        body = self._provider.body(self.route, messages, tools, options)
        return httpx.Request(
            "POST",
            self._url,
            content=dumps(body),
            headers={**self._headers, **self._provider.headers(options), **trace_headers},
            extensions={"timeout": self._http_timeouts},
        )

    async def count_tokens(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> int | None:
        """The upstream's count of the request's input tokens, ``None`` when its API has no
        way to count. One request, not retried, under the route's connect and total
        timeouts and its ``max_in_flight``; a failure raises the
        :class:`~streams.errors.UpstreamError` a stream's request would."""
        options = options or {}
        counted = self._provider.count_request(self.route, messages, tools, options)
        if counted is None:
            return None
        url, body = counted
        headers = {**self._headers, "accept": "application/json", **self._provider.headers(options)}
        request = httpx.Request(
            "POST",
            url,
            content=dumps(body),
            headers=headers,
            extensions={"timeout": self._http_timeouts},
        )
        timeouts = self.route.timeouts
        deadline = time.monotonic() + timeouts.total
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                async with self._slots:
                    response = await self.transport.handle_async_request(request)
                    response.request = request
            if response.status_code >= 400:
                raise await self._status_error(response, deadline)
            answer = await _read_body(response, deadline)
        except TimeoutError:
            raise self._timeout("total") from None
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError("connect", timeouts.connect) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise UpstreamUnavailableError(
                f"the upstream connection failed: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc
        finally:
            if response is not None:
                await _close(response)
        return _input_tokens(answer)

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
        *,
        retry: bool = True,
        prefix: str | None = None,
    ) -> AsyncGenerator[ModelOutput, None]:
        """Stream one assistant turn (see :meth:`Model.stream`). A model group calls it with
        ``retry=False`` (the group moves on to its next route rather than wait to try this
        one again), and with ``prefix``, the answer so far, to have it continued (only when
        :attr:`continuation` is not ``None``): the output is then what follows ``prefix``."""
        route = self.route
        counts = self._counts
        counts.requests += 1
        options = options or {}
        if FAILOVER_OPTION in options:  # a group's option: nothing to switch to here
            options = {name: value for name, value in options.items() if name != FAILOVER_OPTION}
        # After a prefill without the prefix's trailing whitespace, the model starts again
        # with some: the client has that already.
        skip_space = False
        if prefix is not None:
            messages, options = continuation_input(self.continuation, messages, options, prefix)
            skip_space = self.continuation == "prefill" and prefix != prefix.rstrip()
        # The producer's span, current in the consuming task: each attempt's span is its child.
        parent = otel_context.get_current()
        deadline = time.monotonic() + route.timeouts.total
        async with self._slots:
            attempt = 0
            while True:
                attempt += 1
                probe = self.breaker.before_request()
                started = False
                try:
                    # aclosing: leaving early (cancel, error) closes the attempt, and with it
                    # the upstream response, now rather than when it is collected.
                    async with contextlib.aclosing(
                        self._attempt(messages, tools, options, deadline, attempt, parent)
                    ) as attempt_output:
                        async for item in attempt_output:
                            if skip_space and isinstance(item, TextDelta):
                                text = item.text.lstrip()
                                if not text:
                                    continue
                                skip_space = False
                                item = TextDelta(text)
                            started = True
                            yield item
                except UpstreamError as exc:
                    self.breaker.record_failure(probe)
                    again = (
                        retry
                        and not started
                        and exc.retryable
                        and attempt < route.retries.max_attempts
                    )
                    if not again:
                        counts.failures += 1
                        raise
                    delay = backoff_delay(route.retries, attempt, exc.retry_after)
                    if time.monotonic() + delay >= deadline:
                        counts.failures += 1
                        raise
                    counts.retries += 1
                    await asyncio.sleep(delay)
                    continue
                except BaseException:
                    if probe:  # cancelled: no verdict on the upstream
                        self.breaker.release_probe()
                    raise
                self.breaker.record_success(probe)
                return

    async def _attempt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        deadline: float,
        attempt: int,
        parent: otel_context.Context,
    ) -> AsyncGenerator[ModelOutput, None]:
        """One request: send it, check the status, and stream its output."""
        route = self.route
        timeouts = route.timeouts
        self._counts.attempts += 1
        sent_at = time.monotonic()
        first_token_deadline = min(sent_at + timeouts.first_token, deadline)
        response: httpx.Response | None = None
        call = UpstreamCall(route.name, route.provider, route.upstream_model, attempt)
        # Not the current span (this is a generator: a context set here would leak into the
        # consumer between yields); it is passed explicitly and its context sent upstream.
        span = self.tracer.start_span(
            f"chat {route.upstream_model}",
            context=parent,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": route.provider,
                "gen_ai.request.model": route.upstream_model,
                "gateway.route": route.name,
                "gateway.attempt": attempt,
            },
        )
        trace_headers: dict[str, str] = {}
        inject(trace_headers, context=trace.set_span_in_context(span, parent))
        last_chunk_at: float | None = None
        watchdog: Watchdog | None = None
        try:
            try:
                async with asyncio.timeout_at(_loop_time(first_token_deadline)):
                    request = self._request(messages, tools, options, trace_headers)
                    response = await self.transport.handle_async_request(request)
                    response.request = request
            except TimeoutError:
                raise self._timeout("first_token") from None
            call.status = response.status_code
            if response.status_code >= 400:
                raise await self._status_error(response, first_token_deadline)
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                # Often an error said in JSON with a 200 (proxies, some servers): its message
                # is what the client needs to hear.
                body = await _read_body(response, first_token_deadline)
                detail = (error_message(body) or _excerpt(body))[:500]
                raise UpstreamProtocolError(
                    f"the upstream answered {content_type or 'no content type'} where an event "
                    "stream (text/event-stream) was expected" + (f": {detail}" if detail else "")
                )
            decoder = SSEDecoder(
                max_line_bytes=route.max_sse_line_bytes, max_event_bytes=route.max_sse_event_bytes
            )
            parser = self._provider.parser()
            # The transport's stream itself, not through aiter_raw(): one async generator
            # fewer for every chunk to pass through (the response is closed in finally).
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            chunks = aiter(stream)
            produced = False
            to_loop_time = asyncio.get_running_loop().time() - time.monotonic()
            watchdog = Watchdog()
            while True:
                now = time.monotonic()
                limit = min(deadline, now + timeouts.idle)
                if not produced:
                    limit = min(limit, first_token_deadline)
                try:
                    chunk = await watchdog.wait(anext(chunks), limit + to_loop_time)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    phase = "idle"
                    if limit == deadline:
                        phase = "total"
                    elif not produced and limit == first_token_deadline:
                        phase = "first_token"
                    raise self._timeout(phase) from None
                received_at = time.monotonic()
                if last_chunk_at is not None and self.observer is not None:
                    self.observer.chunk_gap(route.name, received_at - last_chunk_at)
                if produced:
                    last_chunk_at = received_at
                too_large: SSELimitError | None = None
                try:
                    decoded = decoder.feed(chunk)
                except SSELimitError as exc:
                    # What the chunk completed before the limit is passed on, then the step fails.
                    decoded, too_large = exc.messages, exc
                for message in decoded:
                    for item in parser.feed(message):
                        # The first output, for the first-token timeout and TTFT: usage is
                        # not (Anthropic's message_start says it before any token).
                        if not produced and not isinstance(item, Usage):
                            produced = True
                            last_chunk_at = received_at
                            call.ttft = self._counts.last_ttft = time.monotonic() - sent_at
                            yield item
                            # A model group's race reads a stream up to here in a task of
                            # its own, then the step's task reads on: the deadlines are its.
                            watchdog.rebind()
                            continue
                        if isinstance(item, Usage):
                            call.input_tokens += item.input_tokens
                            call.output_tokens += item.output_tokens
                        yield item
                if parser.done:
                    if not produced:
                        raise _no_output()
                    await _read_rest(chunks)
                    return
                if too_large is not None:
                    setting = f"max_sse_{too_large.kind}_bytes"
                    raise UpstreamProtocolError(
                        f"the upstream sent {too_large} (the route's {setting})"
                    ) from too_large
            if not parser.finished:
                raise UpstreamStreamError(
                    "the upstream stream ended before the response was complete"
                )
            if not produced:
                raise _no_output()
        except httpx.TimeoutException as exc:
            call.error = UpstreamTimeoutError.code
            raise UpstreamTimeoutError("connect", timeouts.connect) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            call.error = UpstreamUnavailableError.code
            raise UpstreamUnavailableError(
                f"the upstream connection failed: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc
        except UpstreamError as exc:
            call.error = exc.code
            raise
        except BaseException:
            call.error = "cancelled"
            raise
        finally:
            if watchdog is not None:
                watchdog.close()
            if response is not None:
                await _close(response)
            self._finish_call(call, span, sent_at)

    def _finish_call(self, call: UpstreamCall, span: trace.Span, sent_at: float) -> None:
        call.duration = time.monotonic() - sent_at
        if call.status is not None:
            span.set_attribute("http.response.status_code", call.status)
        if call.ttft is not None:
            span.set_attribute("gen_ai.server.time_to_first_token", call.ttft)
        span.set_attribute("gen_ai.usage.input_tokens", call.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", call.output_tokens)
        if call.error is not None:
            span.set_attribute("error.type", call.error)
            if call.error != "cancelled":
                span.set_status(trace.StatusCode.ERROR, call.error)
        span.end()
        if self.observer is not None:
            self.observer.call_finished(call)

    def _timeout(self, phase: str) -> UpstreamTimeoutError:
        timeouts = self.route.timeouts
        seconds = {
            "first_token": timeouts.first_token,
            "idle": timeouts.idle,
            "total": timeouts.total,
            "connect": timeouts.connect,
        }[phase]
        return UpstreamTimeoutError(phase, seconds)

    async def _status_error(self, response: httpx.Response, deadline: float) -> UpstreamError:
        body = await _read_body(response, deadline)
        detail = body.decode(errors="replace").strip() or response.reason_phrase
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return UpstreamStatusError(
            response.status_code,
            f"the upstream answered {response.status_code}: {detail[:500]}",
            retry_after=retry_after,
        )


def _no_output() -> UpstreamStreamError:
    # An answer with neither content nor a finish reason (only "[DONE]", or usage) is no
    # answer: an empty success would read as the model having nothing to say.
    return UpstreamStreamError("the upstream's stream ended without any output")


def continuation_input(
    mode: str | None,
    messages: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
    prefix: str,
) -> tuple[list[Mapping[str, Any]], Mapping[str, Any]]:
    """The conversation and options that ask a route continuing by ``mode`` to go on after
    ``prefix``: the partial answer as the last assistant turn (without its trailing
    whitespace for a prefill, which Anthropic refuses), and for ``continue_final_message``
    that flag (the server then adds no new assistant turn)."""
    if mode == "prefill":
        return [*messages, {"role": "assistant", "content": prefix.rstrip()}], options
    if mode == "continue_final_message":
        flags = {"continue_final_message": True, "add_generation_prompt": False}
        return [*messages, {"role": "assistant", "content": prefix}], {**options, **flags}
    raise ValueError(f"no way to continue an answer by {mode!r}")


async def _read_body(response: httpx.Response, deadline: float) -> bytes:
    """The start of a body that is not a stream (an error's): ``MAX_ERROR_BODY`` bytes at
    most, what has come by ``deadline`` (``time.monotonic``)."""
    body = b""
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            async for part in response.aiter_raw():
                body += part
                if len(body) >= MAX_ERROR_BODY:
                    break
    except (TimeoutError, httpx.HTTPError):
        pass
    return body[:MAX_ERROR_BODY]


def error_message(body: bytes) -> str | None:
    """The message of an error said in JSON, as OpenAI (``{"error": {"message", "type"}}``
    or ``{"error": "..."}``), Anthropic (``{"type": "error", "error": {...}}``) and servers
    following neither (``{"message": ...}``, ``{"detail": ...}``) say it; ``None`` if the body
    is no such thing."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        message, kind = error.get("message"), error.get("type") or error.get("code")
        if isinstance(message, str) and message:
            return f"{kind}: {message}" if isinstance(kind, str) and kind else message
    for found in (error, payload.get("message"), payload.get("detail")):
        if isinstance(found, str) and found:
            return found
    return None


def _input_tokens(body: bytes) -> int:
    """``input_tokens`` of a count's answer (``{"input_tokens": n}``)."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    count = payload.get("input_tokens") if isinstance(payload, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise UpstreamProtocolError(
            f"the upstream's token count has no input_tokens: {_excerpt(body)!r}"
        )
    return count


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = " ".join(body.decode(errors="replace").split())
    return text if len(text) <= limit else text[:limit] + "…"


async def _read_rest(chunks: AsyncIterator[bytes]) -> None:
    """The answer is complete: read what is left of the body (normally only the end of the
    chunked encoding, already received) so that the connection goes back to the pool for
    the next request instead of being closed. An upstream that keeps the body open after
    its answer is not waited for (its connection is then closed)."""
    left = MAX_ERROR_BODY
    try:
        async with asyncio.timeout(REST_TIMEOUT):
            async for part in chunks:
                left -= len(part)
                if left < 0:
                    return
    except (TimeoutError, httpx.HTTPError, httpx.StreamError):
        pass


def _loop_time(monotonic_deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


async def _close(response: httpx.Response) -> None:
    """Close the upstream response even while being cancelled: the upstream must see the
    disconnect now, not when the connection is collected."""
    await finish_shielded(
        response.aclose(),
        timeout=CLOSE_TIMEOUT,
        name="close-upstream-response",
        expected=(httpx.HTTPError, OSError),
    )
