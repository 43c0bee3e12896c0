"""The AI SDK chat directory in a real Redis (streams/cluster/chats.py): the memory one's
rules, shared by instances, every entry with a TTL; and a turn started on one gateway
instance resumed and stopped from another."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis

from streams.cluster.chats import RedisChatDirectory
from streams.cluster.client import StoreClient
from streams.cluster.keys import Keys
from streams.errors import NotFoundError, StoreUnavailableError
from tests.support import running_gateway

PREFIX = "chats-test:"


def chats_of(redis: StoreClient, ttl: float = 60.0) -> RedisChatDirectory:
    return RedisChatDirectory(redis, Keys(PREFIX), ttl=ttl, timeout=2.0)


async def test_a_chat_names_its_latest_turn_for_every_instance(client: StoreClient) -> None:
    one, other = chats_of(client), chats_of(client)
    assert await one.get("c", "alice") is None
    await one.set("c", "alice", "run_1")
    assert await other.get("c", "alice") == "run_1"
    await other.set("c", "alice", "run_2")
    assert await one.get("c", "alice") == "run_2"


@pytest.mark.parametrize(("holder", "caller"), [("alice", "bob"), ("alice", None), (None, "alice")])
async def test_another_owners_chat_is_not_found(
    client: StoreClient, holder: str | None, caller: str | None
) -> None:
    chats = chats_of(client)
    await chats.set("c", holder, "run_1")
    with pytest.raises(NotFoundError):
        await chats.get("c", caller)
    with pytest.raises(NotFoundError):
        await chats.set("c", caller, "run_2")
    assert await chats.get("c", holder) == "run_1"


async def test_clear_forgets_only_the_turn_it_names(client: StoreClient) -> None:
    chats = chats_of(client)
    await chats.set("c", "alice", "run_1")
    await chats.set("c", "alice", "run_2")
    assert await chats.clear("c", "run_1") is False
    assert await chats.get("c", "alice") == "run_2"
    assert await chats.clear("c", "run_2") is True
    assert await chats.get("c", "alice") is None
    assert await client.exists(f"{PREFIX}chat:c") == 0


async def test_every_entry_has_the_ttl_renewed_by_each_use(client: StoreClient) -> None:
    chats = chats_of(client, ttl=30.0)
    await chats.set("c", "alice", "run_1")
    key = f"{PREFIX}chat:c"
    assert 29_000 < await client.pttl(key) <= 30_000
    await client.pexpire(key, 1_000)
    assert await chats.get("c", "alice") == "run_1"
    assert await client.pttl(key) > 29_000
    assert await client.hgetall(key) == {b"owner": b"alice", b"run": b"run_1"}


async def test_an_unreachable_store_is_unavailable() -> None:
    redis = aioredis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    chats = RedisChatDirectory(redis, Keys(PREFIX), ttl=10.0, timeout=0.5)
    try:
        for call in (chats.get("c", None), chats.set("c", None, "r"), chats.clear("c", "r")):
            with pytest.raises(StoreUnavailableError):
                await call
    finally:
        await redis.aclose()


async def test_a_turn_of_one_instance_is_resumed_and_stopped_from_another(
    redis_url: str,
) -> None:
    body = {
        "id": "chat-x",
        "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "sleep 30 seconds"}]}
        ],
        "model": "demo",
        "tools": ["sleep"],
    }
    with (
        running_gateway(redis_url=redis_url, instance_id="one") as one,
        running_gateway(redis_url=redis_url, instance_id="two") as two,
    ):
        async with (
            httpx.AsyncClient(base_url=one.base_url, timeout=10) as first,
            httpx.AsyncClient(base_url=two.base_url, timeout=10) as second,
        ):
            async with first.stream("POST", "/v1/ai-sdk/chat", json=body) as response:
                run_id = response.headers["x-run-id"]
                received = b""
                async for chunk in response.aiter_raw():
                    received += chunk
                    if b'"tool-input-available"' in received:
                        break
            # The first client left; the turn runs on, and the other instance finds it.
            async with second.stream("GET", "/v1/ai-sdk/chat/chat-x/stream") as resumed:
                assert resumed.status_code == 200
                assert resumed.headers["x-run-id"] == run_id
                stream = resumed.aiter_raw()
                replay = b""
                while b'"tool-input-available"' not in replay:
                    replay += await anext(stream)
                stop = await second.post("/v1/ai-sdk/chat/chat-x/stop")
                assert stop.status_code == 200
                assert stop.json() == {"chat_id": "chat-x", "run_id": run_id, "status": "cancelled"}
                async for chunk in stream:
                    replay += chunk
            assert replay.endswith(b'data: {"type":"abort"}\n\ndata: [DONE]\n\n')
            assert (await first.get("/v1/ai-sdk/chat/chat-x/stream")).status_code == 204
