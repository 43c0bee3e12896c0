"""A streamed response whose dialect has said its last ends there, though the run goes on:
a Chat Completions stream that meets a retraction (a model group restarting a step after
output had started) ends with its ``output_retracted`` error and closes, so the openai SDK,
which reads on after ``[DONE]``, is not left waiting for an answer it will never see; its
reader gone, the run is cancelled and no upstream request outlives it."""

from __future__ import annotations

import asyncio

import openai
import pytest
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk

from streams.dialects.responses import run_id_of
from streams.reader import RunReader
from tests.support import running_gateway
from tests.upstream_server import RESET, STALL, Reply, UpstreamServer, chat_chunk, route

USER = [{"role": "user", "content": "hello"}]


def text_then(*tail: object) -> Reply:
    """An OpenAI stream that starts an answer, "Hel", then does ``tail``."""
    return Reply(
        steps=[
            chat_chunk({"role": "assistant", "content": ""}),
            chat_chunk({"content": "Hel"}),
            *tail,
        ]
    )


async def read_text(stream: AsyncStream[ChatCompletionChunk], seen: list[str]) -> None:
    """Read ``stream`` to its end (as the SDK does: on after ``[DONE]``, until the body
    ends), its text into ``seen``."""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append(chunk.choices[0].delta.content)


async def test_a_retracted_chat_stream_ends_with_an_error_and_its_run_is_cancelled() -> None:
    with UpstreamServer() as primary, UpstreamServer() as secondary:
        primary.script(text_then(RESET))
        # The restarted answer never ends by itself: the run goes on until it is cancelled.
        secondary.script(text_then(STALL))
        with running_gateway(
            routes={"a": route(primary, max_attempts=1), "b": route(secondary, max_attempts=1)},
            groups={"smart": {"routes": ["a", "b"], "policy": "restart"}},
        ) as gateway:
            client = openai.AsyncOpenAI(
                base_url=gateway.base_url + "/v1", api_key="x", max_retries=0, timeout=10
            )
            async with client:
                seen: list[str] = []
                async with asyncio.timeout(10):
                    async with client.chat.completions.with_streaming_response.create(
                        model="smart", messages=USER, stream=True
                    ) as response:
                        run_id = response.headers["x-run-id"]
                        stream = await response.parse()
                        with pytest.raises(openai.APIError) as raised:
                            await read_text(stream, seen)
                        # The SDK reads on after [DONE] until the body ends: it did end.
            assert raised.value.code == "output_retracted"
            assert seen == ["Hel"]  # never the restarted answer joined to it
            snapshot = await gateway.wait_run(run_id)
            assert snapshot["status"] == "cancelled"
            # No upstream request outlives the run: the primary's was reset, and the
            # secondary's, if the restart reached it before the cancel, is closed.
            for record in secondary.wait_for_requests(0):
                await secondary.wait_disconnect(record)


async def test_the_stream_ends_though_the_run_goes_on_and_the_last_reader_cancels_it() -> None:
    """A second reader of the run (held on the server from the run's first moment) keeps it
    going past the chat stream's end: the stream closed by itself, and once the last reader
    leaves, the run is cancelled and the restarted upstream request closed."""
    with UpstreamServer() as primary, UpstreamServer() as secondary:
        primary.script(text_then(RESET))
        secondary.script(text_then(STALL))
        with running_gateway(
            routes={"a": route(primary, max_attempts=1), "b": route(secondary, max_attempts=1)},
            groups={"smart": {"routes": ["a", "b"], "policy": "restart"}},
        ) as gateway:
            manager = gateway.state.manager
            held: list[RunReader] = []

            async def hold_the_first_run() -> None:
                # Every turn of the server's loop, so the reader is there before the run's
                # upstream has even answered (a run has no event to wait on for its start).
                while not manager.active_run_ids:  # noqa: ASYNC110
                    await asyncio.sleep(0)
                run = manager.get_unchecked(manager.active_run_ids[0])
                held.append(RunReader(gateway.state.runs, run).__enter__())

            holding = asyncio.ensure_future(gateway.call(hold_the_first_run()))
            client = openai.AsyncOpenAI(
                base_url=gateway.base_url + "/v1", api_key="x", max_retries=0, timeout=10
            )
            async with client, asyncio.timeout(10):
                stream = await client.chat.completions.create(
                    model="smart", messages=USER, stream=True
                )
                with pytest.raises(openai.APIError) as raised:
                    await read_text(stream, [])
            await holding
            assert raised.value.code == "output_retracted"
            (reader,) = held
            (restarted,) = secondary.wait_for_requests(1)
            assert not restarted.disconnected.is_set()
            assert reader.run.snapshot()["status"] == "running"  # the stream ended first

            async def leave() -> None:
                reader.__exit__(None, None, None)

            await gateway.call(leave())
            assert (await gateway.wait_run(reader.run.id))["status"] == "cancelled"
            await secondary.wait_disconnect(restarted)


async def test_a_retracted_response_over_the_socket_fails_and_its_run_is_cancelled() -> None:
    """The Responses WebSocket mode ends a response at its ``response.failed`` as SSE does:
    the response's reader leaves, its run is cancelled, and the socket goes on."""
    with UpstreamServer() as primary, UpstreamServer() as secondary:
        primary.script(text_then(RESET))
        secondary.script(text_then(STALL))
        with running_gateway(
            routes={"a": route(primary, max_attempts=1), "b": route(secondary, max_attempts=1)},
            groups={"smart": {"routes": ["a", "b"], "policy": "restart"}},
        ) as gateway:
            client = openai.AsyncOpenAI(
                base_url=gateway.base_url + "/v1", api_key="x", max_retries=0, timeout=10
            )
            async with client, client.responses.connect() as connection, asyncio.timeout(10):
                await connection.send({"type": "response.create", "model": "smart", "input": "hi"})
                async for event in connection:
                    if event.type == "response.failed":
                        break
                failed = event.response
                assert failed.error is not None
                assert failed.error.message.startswith("output_retracted: ")
                snapshot = await gateway.wait_run(run_id_of(failed.id))
                assert snapshot["status"] == "cancelled"
                await connection.send({"type": "response.create", "model": "demo", "input": "hi"})
                async for event in connection:
                    if event.type == "response.completed":
                        break
            for record in secondary.wait_for_requests(0):
                await secondary.wait_disconnect(record)
