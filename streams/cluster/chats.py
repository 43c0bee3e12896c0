"""The AI SDK face's chat directory in Redis, shared by every instance: a chat's turn
started on one instance is resumed or stopped from any other (the run itself is found
through the run directory, :class:`~streams.cluster.backend.ClusterBackend`).

One hash per chat, ``chat:{id}`` (:class:`~streams.cluster.keys.Keys`): ``owner`` and
``run``, with a TTL renewed on each write and each read. The owner check and the
compare-and-clear are Lua scripts, so two instances never interleave them.
"""

from __future__ import annotations

import asyncio

from streams.chats import chat_not_found
from streams.cluster.backend import unavailable
from streams.cluster.client import StoreClient
from streams.cluster.keys import Keys
from streams.cluster.log import STORE_ERRORS, raise_if_cancelling

__all__ = ["RedisChatDirectory"]

# KEYS[1] the chat; ARGV: owner, run id, TTL (ms). 0: another owner holds the chat.
_SET = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= false and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'run', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1] the chat; ARGV: run id. 1: forgotten.
_CLEAR = """
if redis.call('HGET', KEYS[1], 'run') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisChatDirectory:
    """Chats in Redis under ``keys``' prefix, each kept ``ttl`` seconds after its last use;
    every call bounded by ``timeout`` (a store that does not answer is a 503)."""

    def __init__(self, redis: StoreClient, keys: Keys, *, ttl: float, timeout: float) -> None:
        if ttl <= 0:
            raise ValueError("a chat directory needs a positive ttl")
        self._redis = redis
        self._keys = keys
        self._ttl_ms = max(1, round(ttl * 1000))
        self._timeout = timeout
        self._set = redis.register_script(_SET)
        self._clear = redis.register_script(_CLEAR)

    async def get(self, chat_id: str, owner: str | None) -> str | None:
        key = self._keys.chat(chat_id)
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=True)
                pipe.hmget(key, "owner", "run")
                pipe.pexpire(key, self._ttl_ms)
                (stored_owner, run_id), _ = await pipe.execute()
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if stored_owner is None or run_id is None:
            return None
        if stored_owner.decode() != (owner or ""):
            raise chat_not_found(chat_id)
        return str(run_id.decode())

    async def set(self, chat_id: str, owner: str | None, run_id: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                done = await self._set(
                    keys=[self._keys.chat(chat_id)], args=[owner or "", run_id, self._ttl_ms]
                )
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if not done:
            raise chat_not_found(chat_id)

    async def clear(self, chat_id: str, run_id: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                done = await self._clear(keys=[self._keys.chat(chat_id)], args=[run_id])
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        return bool(done)
