"""A response started on one gateway instance is polled, re-attached, cancelled and deleted
on another, through the openai SDK, with both instances sharing one real Redis."""

from __future__ import annotations

import openai

from tests.gateway_process import GatewayProcess, eventually, gateway_processes

LEASE_TTL = 1.5
GATEWAY_TOOLS = {"type": "mcp", "server_label": "gateway", "server_url": "gateway:"}


def sdk(gateway: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=10
    )


async def test_a_response_streamed_on_one_instance_is_re_attached_on_another(
    redis_url: str,
) -> None:
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with sdk(a) as on_a, sdk(b) as on_b:
            stream = await on_a.responses.create(
                model="demo", input="what is 6 * 7", tools=[GATEWAY_TOOLS], stream=True
            )
            events = [event async for event in stream]
            response_id = events[0].response.id  # type: ignore[union-attr]
            resumed = await on_b.responses.retrieve(response_id, stream=True, starting_after=6)
            rest = [event async for event in resumed]
            whole = await on_b.responses.retrieve(response_id)
    assert [(e.type, e.sequence_number) for e in rest] == [
        (e.type, e.sequence_number) for e in events[7:]
    ]
    assert whole.status == "completed"
    assert "42" in whole.output_text


async def test_a_background_response_is_cancelled_and_deleted_from_another_instance(
    redis_url: str,
) -> None:
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with sdk(a) as on_a, sdk(b) as on_b:
            started = await on_a.responses.create(
                model="demo", input="sleep 30 seconds", tools=[GATEWAY_TOOLS], background=True
            )
            assert (await on_b.responses.retrieve(started.id)).status in ("queued", "in_progress")
            cancelled = await on_b.responses.cancel(started.id)
            assert cancelled.status == "cancelled"

            async def cancelled_on_a() -> bool:
                # B saw the end in Redis; A shows it once its own write's reply is in (the
                # owner never shows an event before Redis has it, so it may be a moment
                # behind a reader elsewhere).
                return (await on_a.responses.retrieve(started.id)).status == "cancelled"

            await eventually(cancelled_on_a, timeout=5, interval=0.01, what="cancelled on A")
            await on_b.responses.delete(started.id)
            for instance in (on_a, on_b):
                try:
                    await instance.responses.retrieve(started.id)
                except openai.NotFoundError:
                    continue
                raise AssertionError("a deleted response was found")
