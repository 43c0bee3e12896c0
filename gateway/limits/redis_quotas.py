"""Per-key quotas shared by every gateway instance through Redis: the same limits as
:class:`gateway.limits.quotas.MemoryQuotas` (runs started per minute, streams open at once,
runs active at once), held across all instances instead of per process: a
:class:`~gateway.limits.quotas.Quotas`.

Runs per minute are a token bucket in a Redis hash, taken by one Lua script, so two instances
taking the last token at once cannot both get it. Stream slots and active-run slots are
members of a sorted set per owner (one for each limit), scored by when they expire: an
instance renews the slots it holds every ``slot_ttl / 3``, so the slots of an instance that
died (never released, never renewed) run out after ``slot_ttl`` and no slot leaks forever.

Any failure to reach Redis is a :class:`~streams.errors.StoreUnavailableError` at this
boundary; nothing here waits on Redis for longer than :attr:`RedisQuotas.call_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import itertools
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import quote

import redis.exceptions
from redis.commands.core import AsyncScript

from gateway.limits.quotas import (
    RunStart,
    Slot,
    active_runs_exceeded,
    open_streams_exceeded,
    runs_rate_exceeded,
)
from streams.cleanup import Cleanups
from streams.cluster.client import StoreClient, ready_client
from streams.cluster.keys import Keys
from streams.cluster.lanes import StoreLanes
from streams.cluster.log import raise_if_cancelling
from streams.errors import GatewayError, StoreUnavailableError
from streams.statistics import StoreMetric

__all__ = [
    "RENEW_SLOTS",
    "SKEW_MARGIN_MS",
    "TAKE_SLOT",
    "TAKE_TOKEN",
    "RedisQuotaStatistics",
    "RedisQuotas",
    "owner_tag",
]

logger = logging.getLogger("gateway.quotas")

T = TypeVar("T")

# The scripts take the time from the caller (the instance's clock), not from Redis TIME: the
# same clock then scores the stream slots, refills the bucket and is the one tests can drive;
# and instances' clocks are NTP-synced to milliseconds, far finer than limits counted in
# seconds. A clock running behind the bucket's last writer must not take tokens back nor mint
# them: elapsed time is never negative. Key expiries add SKEW_MARGIN_MS so a key never expires
# (Redis's clock) before what it holds has run out (the instances' clocks).
SKEW_MARGIN_MS = 1000

# A Lua function the scripts below share: refill the bucket ``key`` (a hash: tokens,
# updated) up to ``now`` and take a token if it has one; the seconds to wait for one (0 when
# one was taken). A clock behind the bucket's last writer neither takes tokens back nor
# mints them.
_TAKE_FROM_BUCKET = """
local function take_token(key, rate, burst, now, margin)
  local state = redis.call('HMGET', key, 'tokens', 'updated')
  local tokens = tonumber(state[1])
  local updated = tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens = burst
    updated = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
  updated = math.max(updated, now)
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tokens, 'updated', updated)
  -- Once refilled to the burst the bucket is the same as no bucket: let the key go then.
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + margin)
  return wait
end
"""

# KEYS[1]: the owner's bucket. ARGV: rate (tokens/s), burst, now (s), skew margin (ms).
# Returns the seconds to wait for a token as a string ("0" when one was taken): a Lua number
# returned to Redis would be truncated to an integer.
TAKE_TOKEN = (
    _TAKE_FROM_BUCKET
    + """
local wait = take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                        tonumber(ARGV[4]))
return string.format('%.17g', wait)
"""
)

# KEYS[1]: the owner's slots (a sorted set: slot id -> expiry time).
# ARGV: now, expires, max slots, slot id, skew margin (ms). Returns 1 if the slot was taken.
TAKE_SLOT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
-- The key lives as long as its latest slot (instances may differ in slot_ttl).
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + tonumber(ARGV[5]))
return 1
"""

# KEYS[1]: the owner's active-run slots, KEYS[2]: its bucket, KEYS[3] (if any): its stream
# slots. ARGV: now, expires, max active runs, the run's slot id, rate, burst, skew margin
# (ms), max streams, the stream's slot id. TAKE_SLOT (the stream's, then the run's) and
# TAKE_TOKEN in one: all is taken or nothing, and a start refused for one limit spends
# nothing of the next. Returns the limit that refused ('streams', 'active_runs', 'rate') or
# 'ok', and the seconds to wait for a token (as a string, see TAKE_TOKEN).
TAKE_RUN_START = (
    _TAKE_FROM_BUCKET
    + """
local now = tonumber(ARGV[1])
local function full(key, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  return redis.call('ZCARD', key) >= tonumber(limit)
end
local function add(key, slot)
  redis.call('ZADD', key, ARGV[2], slot)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, math.ceil((tonumber(last[2]) - now) * 1000) + tonumber(ARGV[7]))
end
if #KEYS == 3 and full(KEYS[3], ARGV[8]) then return {'streams', '0'} end
if full(KEYS[1], ARGV[3]) then return {'active_runs', '0'} end
local wait = take_token(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6]), now, tonumber(ARGV[7]))
if wait > 0 then return {'rate', string.format('%.17g', wait)} end
add(KEYS[1], ARGV[4])
if #KEYS == 3 then add(KEYS[3], ARGV[9]) end
return {'ok', '0'}
"""
)

# KEYS[1]: the owner's slots. ARGV: now, expires, skew margin (ms), slot ids...
# Re-scores only the slots still there (ZADD XX): a slot that ran out and was taken over must
# not come back, or the owner would hold more than its limit. Returns how many were renewed.
RENEW_SLOTS = """
local now = tonumber(ARGV[1])
local renewed = 0
for i = 4, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
    renewed = renewed + 1
  end
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + tonumber(ARGV[3]))
end
return renewed
"""


@functools.lru_cache(maxsize=4096)  # on the way of every run start: keys' names are few
def owner_tag(owner: str | None) -> str:
    """The part of a Redis key that names ``owner``: ``-`` for no owner (a gateway without
    API keys), else the name percent-encoded, so no name can reach into another key. A name
    that is just ``-`` (which percent-encoding leaves alone) is spelt ``%2D``, which no other
    name encodes to."""
    if owner is None:
        return "-"
    tag = quote(owner, safe="")
    return "%2D" if tag == "-" else tag


class RedisQuotas:
    """Per-key quotas held across every gateway instance sharing one Redis.

    ``instance_id`` names this instance in the ids of the slots it takes. The instance
    must call :meth:`renew` every ``slot_ttl / 3`` while it runs, and :meth:`release_all` when
    it shuts down: used as an async context manager, this object does both itself.
    """

    #: The longest any one Redis call may take before it counts as Redis being unreachable.
    call_timeout: float = 2.0

    def __init__(
        self,
        redis: StoreClient,
        *,
        lanes: StoreLanes,
        prefix: str,
        runs_per_minute: float,
        max_streams: int,
        slot_ttl: float,
        instance_id: str,
        max_active_runs: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if runs_per_minute <= 0:
            raise ValueError(f"runs_per_minute must be positive, not {runs_per_minute}")
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, not {max_streams}")
        if slot_ttl <= 0:
            raise ValueError(f"slot_ttl must be positive, not {slot_ttl}")
        self._redis = redis
        # The takes and releases, on the way of every run's start and end, go on pipelined
        # connections (streams.cluster.lanes); the rest on redis-py's client.
        self._lanes = lanes
        self._ready = False  # the client is set up (see ready_client)
        self._keys = Keys(prefix)
        self._runs_per_second = runs_per_minute / 60
        self._burst = max(1.0, runs_per_minute)
        self._max_streams = max_streams
        self._max_active_runs = max_active_runs
        self._slot_ttl = slot_ttl
        self._clock = clock
        # A random part too: an instance restarted under the same id must not reuse the slot
        # ids of its previous life, whose slots may not have run out yet.
        self._slot_prefix = f"{instance_id}:{secrets.token_hex(4)}:"
        self._slot_numbers = itertools.count()
        self._take_token = redis.register_script(TAKE_TOKEN)
        self._take_slot = redis.register_script(TAKE_SLOT)
        self._take_run_start = redis.register_script(TAKE_RUN_START)
        # slot id -> the key of the set it is in, for every slot this instance holds (or may
        # hold: one whose acquire is under way counts, so renew and release_all cover it).
        self._held: dict[str, str] = {}
        # Releases: a run's end cannot wait for one, a cancelled stream's need not.
        self._releasing = Cleanups(timeout=self.call_timeout * 2, name="release-slot")
        # The renewal task's owner, from __aenter__ to __aexit__.
        self._tasks: asyncio.TaskGroup | None = None
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        """Renew the slots this instance holds every ``slot_ttl / 3`` until exit."""
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._renewer = self._tasks.create_task(
            self._renew_every(self._slot_ttl / 3), name="renew-slots"
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop renewing and give back every slot held (see :meth:`release_all`)."""
        tasks, self._tasks = self._tasks, None
        renewer, self._renewer = self._renewer, None
        assert tasks is not None, "not entered"
        assert renewer is not None
        renewer.cancel()
        # The task group waits for the renewal to stop; a cancel of this task meanwhile is
        # raised by it, never swallowed.
        await tasks.__aexit__(None, None, None)
        with contextlib.suppress(GatewayError):
            await self.release_all()

    async def _renew_every(self, interval: float) -> None:
        """Keep this instance's slots alive in Redis (those of a dead instance expire)."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(GatewayError):
                await self.renew()

    # An owner's keys share its tag (one slot on a cluster); every script touches one key.
    def _runs_key(self, owner: str | None) -> str:
        return self._keys.quota("runs", owner_tag(owner))

    def _streams_key(self, owner: str | None) -> str:
        return self._keys.quota("streams", owner_tag(owner))

    def _active_runs_key(self, owner: str | None) -> str:
        return self._keys.quota("active_runs", owner_tag(owner))

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Await one Redis call, bounded by :attr:`call_timeout`, any failure of Redis raised
        as :class:`StoreUnavailableError` (cancellation goes through untouched)."""
        try:
            async with asyncio.timeout(self.call_timeout):
                if not self._ready:
                    try:
                        # A cluster client's set-up, once: see ready_client.
                        await ready_client(self._redis)
                    except BaseException:
                        if inspect.iscoroutine(awaitable):
                            awaitable.close()  # never started: no "never awaited" warning
                        raise
                    self._ready = True
                result = await awaitable
        except (redis.exceptions.RedisError, OSError) as error:  # TimeoutError is an OSError
            raise StoreUnavailableError(
                f"Redis cannot be reached (the per-key quotas live there): "
                f"{type(error).__name__}: {error}"
            ) from error
        raise_if_cancelling()  # redis-py may have swallowed a cancel (Python 3.11)
        return result

    async def _script(self, script: AsyncScript, keys: list[str], args: Sequence[Any]) -> Any:
        """Run ``script`` on the lanes (EVALSHA), loading it first if Redis does not know it
        (it restarted, or its scripts were flushed)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._lanes.execute(*command)
        except redis.exceptions.NoScriptError:
            await self._redis.script_load(script.script)
            return await self._lanes.execute(*command)

    async def start_run(self, owner: str | None) -> None:
        """Count a run start against ``owner``'s rate (a token bucket: ``runs_per_minute / 60``
        tokens per second, holding at most ``max(1, runs_per_minute)``), or raise
        :class:`RateLimitedError` with ``retry_after`` seconds.

        Raises :class:`StoreUnavailableError` if Redis cannot be reached."""
        answer = await self._call(
            self._script(
                self._take_token,
                [self._runs_key(owner)],
                [self._runs_per_second, self._burst, self._clock(), SKEW_MARGIN_MS],
            )
        )
        wait = float(answer)
        if wait > 0:
            raise runs_rate_exceeded(self._runs_per_second * 60, wait)

    @contextlib.asynccontextmanager
    async def stream(self, owner: str | None) -> AsyncIterator[None]:
        """Hold one of ``owner``'s stream slots (at most ``max_streams`` across all instances)
        while the body runs, or raise :class:`LimitExceededError` when they are all taken.

        The slot is given back on every exit path, cancellation included. Raises
        :class:`StoreUnavailableError` on entry if Redis cannot be reached."""
        slot = await self.take_stream(owner)
        try:
            yield
        finally:
            await self.release_stream(owner, slot)

    async def take_stream(self, owner: str | None) -> Slot:
        """Take one of ``owner``'s stream slots (at most ``max_streams`` across all
        instances) and return it, or raise :class:`LimitExceededError` when they are all
        taken. Raises :class:`StoreUnavailableError` if Redis cannot be reached."""
        slot = await self._take(self._streams_key(owner), self._max_streams)
        if slot is None:
            raise open_streams_exceeded(self._max_streams)
        return slot

    async def take_run_start(self, owner: str | None, *, stream: bool) -> RunStart:
        """A stream slot (if ``stream``), an active-run slot and a run-rate token of
        ``owner``'s, in one script (see :meth:`~gateway.limits.quotas.Quotas.take_run_start`).
        Raises :class:`StoreUnavailableError` if Redis cannot be reached."""
        keys = [self._active_runs_key(owner), self._runs_key(owner)]
        run = self._new_slot(keys[0])
        streams = None
        if stream:
            keys.append(self._streams_key(owner))
            streams = self._new_slot(keys[2])
        taken = {run: keys[0]} if streams is None else {run: keys[0], streams: keys[2]}
        now = self._clock()
        args: list[float | str] = [now, now + self._slot_ttl, self._max_active_runs, run]
        args += [self._runs_per_second, self._burst, SKEW_MARGIN_MS]
        args += [self._max_streams, streams or ""]
        try:
            answer = await self._call(self._script(self._take_run_start, keys, args))
        except asyncio.CancelledError:
            # Redis may have run the script before the cancellation: give the slots back in
            # case it did.
            for slot, key in taken.items():
                await self._release(key, slot)
            raise
        except BaseException:
            for slot in taken:  # they run out after slot_ttl, should the script have run
                self._held.pop(slot, None)
            raise
        refused, wait = answer[0].decode(), float(answer[1])
        if refused == "ok":
            return RunStart(run, streams)
        for slot in taken:
            del self._held[slot]
        if refused == "streams":
            raise open_streams_exceeded(self._max_streams)
        if refused == "active_runs":
            raise active_runs_exceeded(self._max_active_runs)
        raise runs_rate_exceeded(self._runs_per_second * 60, wait)

    async def release_stream(self, owner: str | None, slot: Slot) -> None:
        """Give back a slot :meth:`take_stream` took (see :meth:`_release`)."""
        await self._release(self._streams_key(owner), slot)

    async def take_active_run(self, owner: str | None) -> Slot:
        """Take one of ``owner``'s active-run slots (at most ``max_active_runs`` across all
        instances) and return it, or raise :class:`LimitExceededError` when they are all
        taken. Whoever takes it gives it back with :meth:`release_active_run` when the run
        ends; held, it is renewed with the stream slots. Raises
        :class:`StoreUnavailableError` if Redis cannot be reached."""
        slot = await self._take(self._active_runs_key(owner), self._max_active_runs)
        if slot is None:
            raise active_runs_exceeded(self._max_active_runs)
        return slot

    def release_active_run(self, owner: str | None, slot: Slot) -> None:
        """Give back a slot :meth:`take_active_run` took, in a task of this object's own (a
        run's end cannot wait on Redis). A slot :meth:`release_all` gave back already is left
        alone."""
        if self._held.pop(slot, None) is None:
            return
        key = self._active_runs_key(owner)
        sent = self._send_release(key, slot)
        if sent is None:
            self._releasing.start(self._remove_slot(key, slot))
        else:
            sent.add_done_callback(functools.partial(self._released, slot))

    async def active_runs(self, owner: str | None) -> int:
        """How many of ``owner``'s active-run slots are held now, across all instances."""
        count = await self._call(
            self._redis.zcount(self._active_runs_key(owner), f"({self._clock()!r}", "+inf")
        )
        return int(count)

    async def _take(self, key: str, limit: int) -> str | None:
        """Take a slot of the set ``key`` holding at most ``limit``: its id, or None when
        they are all taken."""
        slot = self._new_slot(key)
        try:
            now = self._clock()
            taken = await self._call(
                self._script(
                    self._take_slot, [key], [now, now + self._slot_ttl, limit, slot, SKEW_MARGIN_MS]
                )
            )
        except asyncio.CancelledError:
            # Redis may have run the script before the cancellation: take the slot back in
            # case it did.
            await self._release(key, slot)
            raise
        except BaseException:
            # Redis is unreachable or slow: telling it anything now would fail too. Should
            # the script have run, the slot runs out after slot_ttl, as it is not renewed.
            self._held.pop(slot, None)
            raise
        if not taken:
            del self._held[slot]
            return None
        return slot

    def _new_slot(self, key: str) -> str:
        """A new slot id of the set ``key``, held from now (renew and release_all cover a
        slot whose acquire is under way)."""
        slot = f"{self._slot_prefix}{next(self._slot_numbers)}"
        self._held[slot] = key
        return slot

    async def _release(self, key: str, slot: str) -> None:
        """Give ``slot`` back. Runs to its end even if the calling task is cancelled meanwhile
        (shielded, bounded by :attr:`call_timeout`); never raises but CancelledError."""
        # No longer held: renew must not keep it alive, so if Redis cannot be told now, the
        # slot still runs out after slot_ttl.
        self._held.pop(slot, None)
        sent = self._send_release(key, slot)
        if sent is None:
            # A cancellation of the caller interrupts only the wait: the release goes on.
            await self._releasing.run(self._remove_slot(key, slot))
            return
        # Sent: a cancellation of the caller cannot stop it either.
        await asyncio.wait([sent], timeout=self.call_timeout)
        if sent.done():
            self._released(slot, sent)
        else:
            sent.cancel()
            self._unreleased(slot, "no answer within the call timeout")

    def _send_release(self, key: str, slot: str) -> asyncio.Future[Any] | None:
        """Send the release of ``slot`` in this step, on the lanes: its reply's future, or
        None if the lane is not connected (or has just been dropped): then released in a
        task, as any Redis call."""
        try:
            sent = self._lanes.send_nowait([("ZREM", key, slot)])
        except (redis.exceptions.RedisError, OSError):
            return None
        return None if sent is None else sent[0]

    def _released(self, slot: str, reply: asyncio.Future[Any]) -> None:
        """Check the reply of a release sent on the lanes (a callback: a run's end cannot
        wait for it)."""
        if reply.cancelled():
            return
        error = reply.exception()
        if error is not None:
            self._unreleased(slot, f"{type(error).__name__}: {error}")

    def _unreleased(self, slot: str, why: str) -> None:
        logger.warning(
            "could not release slot %s; it expires within %gs: %s", slot, self._slot_ttl, why
        )

    async def _remove_slot(self, key: str, slot: str) -> None:
        try:
            await self._call(self._lanes.execute("ZREM", key, slot))
        except StoreUnavailableError as error:
            # The slot runs out by itself after slot_ttl: a failed release must not mask what
            # ended the stream.
            logger.warning(
                "could not release a slot; it expires within %gs: %s",
                self._slot_ttl,
                error,
            )

    async def open_streams(self, owner: str | None) -> int:
        """How many of ``owner``'s stream slots are held now, across all instances (slots
        past their expiry do not count, even before they are cleared away)."""
        count = await self._call(
            self._redis.zcount(self._streams_key(owner), f"({self._clock()!r}", "+inf")
        )
        return int(count)

    async def renew(self) -> None:
        """Extend every slot this instance holds by ``slot_ttl`` from now, in one round trip.

        The instance calls this every ``slot_ttl / 3``. A slot that ran out meanwhile (the
        instance stalled past ``slot_ttl``, or Redis lost its data) is not brought back:
        another instance may have taken its place. Raises :class:`StoreUnavailableError` if
        Redis cannot be reached."""
        by_key: defaultdict[str, list[str]] = defaultdict(list)
        for slot, key in self._held.items():
            by_key[key].append(slot)
        if not by_key:
            return
        now = self._clock()
        # EVAL with the script's text, not EVALSHA: inside a pipeline a script Redis does not
        # know (it restarted) would fail the call, while this small text costs little.
        pipe = self._redis.pipeline(transaction=False)
        for key, slots in by_key.items():
            # execute_command: redis-py's cluster pipeline refuses pipe.eval (not the command).
            pipe.execute_command(
                "EVAL", RENEW_SLOTS, 1, key, now, now + self._slot_ttl, SKEW_MARGIN_MS, *slots
            )
        renewed: list[Any] = await self._call(pipe.execute())
        lost = sum(len(slots) for slots in by_key.values()) - sum(int(n) for n in renewed)
        if lost > 0:
            # Usually a slot released while this renewal was under way; more than a few
            # means slots ran out and the owners' stream counts were low meanwhile.
            logger.info("%d slot(s) were gone when renewed", lost)

    async def release_all(self) -> None:
        """Give back every slot this instance holds, in one round trip (clean shutdown), once
        the releases under way have ended.

        Streams still open and runs still active lose their slots: their own releases later
        change nothing. Raises :class:`StoreUnavailableError` if Redis cannot be reached; the
        slots then run out after ``slot_ttl``, since they are no longer renewed."""
        await self._releasing.aclose()  # each bounded by call_timeout
        by_key: defaultdict[str, list[str]] = defaultdict(list)
        for slot, key in self._held.items():
            by_key[key].append(slot)
        self._held.clear()
        if not by_key:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, slots in by_key.items():
            pipe.zrem(key, *slots)
        await self._call(pipe.execute())

    def held(self) -> int:
        """How many slots this instance holds now (for metrics, and to show none leak)."""
        return len(self._held)

    def statistics(self) -> RedisQuotaStatistics:
        return RedisQuotaStatistics(slots_held=len(self._held))


@dataclass(frozen=True, slots=True)
class RedisQuotaStatistics:
    """This instance's part in the quotas shared through Redis."""

    slots_held: int  # stream and active-run slots this instance holds (and renews)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def metrics(self) -> Sequence[StoreMetric]:
        return (
            StoreMetric(
                "gateway_stream_slots_held",
                "Per-key stream slots this instance holds in the shared store",
                self.slots_held,
            ),
        )
