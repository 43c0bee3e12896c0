"""Per-key quotas shared through Redis (``gateway/redis_quotas.py``): two ``RedisQuotas``
with different instance ids on one real Redis stand for two gateway instances; each test
runs on a single Redis and on a three-master Redis Cluster (``any_redis_url``)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.limits.redis_quotas import RedisQuotas
from streams.cluster.client import StoreClient, store_client
from streams.cluster.lanes import StoreLanes
from streams.errors import LimitExceededError, RateLimitedError, StoreUnavailableError
from tests.redis_server import RedisServer

PREFIX = "test:"

Connect = Callable[[str], StoreClient]
Instance = Callable[..., RedisQuotas]


class FakeClock:
    """A clock the test moves by hand, starting at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Makes Redis clients (one per instance, as separate processes would have), closed after
    the test."""
    clients: list[StoreClient] = []

    def make(url: str) -> StoreClient:
        client = store_client(url, max_connections=20, timeout=2.0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def lanes_of() -> Iterator[Callable[[StoreClient], StoreLanes]]:
    """Makes a client's lanes (streams.cluster.lanes), closed after the test."""
    made: list[StoreLanes] = []

    def make(client: StoreClient) -> StoreLanes:
        made.append(StoreLanes(client))
        return made[-1]

    yield make
    for lanes in made:
        lanes.close()


@pytest.fixture
def instance(
    connect: Connect, lanes_of: Callable[[StoreClient], StoreLanes], any_redis_url: str
) -> Instance:
    """Makes one gateway instance's quotas on the test's Redis."""

    def make(
        instance_id: str,
        *,
        runs_per_minute: float = 60.0,
        max_streams: int = 2,
        max_active_runs: int = 2,
        slot_ttl: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> RedisQuotas:
        client = connect(any_redis_url)
        return RedisQuotas(
            client,
            lanes=lanes_of(client),
            prefix=PREFIX,
            runs_per_minute=runs_per_minute,
            max_streams=max_streams,
            max_active_runs=max_active_runs,
            slot_ttl=slot_ttl,
            instance_id=instance_id,
            clock=clock,
        )

    return make


async def every_key(client: StoreClient) -> set[bytes]:
    """Every key in the store: on a cluster, of every master."""
    if isinstance(client, redis.asyncio.RedisCluster):
        await client.initialize()
        found = await client.keys("*", target_nodes=redis.asyncio.RedisCluster.PRIMARIES)
    else:
        found = await client.keys("*")
    return set(found)


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Poll ``condition`` until it holds; fail if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"the condition did not hold within {timeout}s")
        await asyncio.sleep(0.02)


async def hold_until_cancelled(quotas: RedisQuotas, owner: str, entered: asyncio.Event) -> None:
    async with quotas.stream(owner):
        entered.set()
        await asyncio.Event().wait()


async def holding_task(quotas: RedisQuotas, owner: str) -> asyncio.Task[None]:
    """A task that holds one of ``owner``'s slots until it is cancelled (returned once it
    holds it)."""
    entered = asyncio.Event()
    task = asyncio.create_task(hold_until_cancelled(quotas, owner, entered))
    await asyncio.wait_for(entered.wait(), 5)
    return task


# --- runs per minute ------------------------------------------------------------------------


@pytest.mark.parametrize("burst", [1, 3, 8])
async def test_the_run_rate_holds_across_instances(instance: Instance, burst: int) -> None:
    clock = FakeClock()
    a = instance("a", runs_per_minute=burst, clock=clock)
    b = instance("b", runs_per_minute=burst, clock=clock)
    for n in range(burst):
        await (a if n % 2 else b).start_run("alice")
    for quotas in (a, b):
        with pytest.raises(RateLimitedError) as raised:
            await quotas.start_run("alice")
        assert raised.value.retry_after > 0


async def test_retry_after_is_the_time_to_the_next_token(instance: Instance) -> None:
    clock = FakeClock()
    a = instance("a", runs_per_minute=3, clock=clock)
    b = instance("b", runs_per_minute=3, clock=clock)
    for _ in range(3):
        await a.start_run("alice")
    clock.advance(5)
    # 3 per minute: one token every 20 s, 5 s of which have passed
    with pytest.raises(RateLimitedError, match=r"limit 3 per minute.*retry in 15\.0s") as raised:
        await b.start_run("alice")
    assert raised.value.retry_after == pytest.approx(15.0)


async def test_a_token_refilled_on_one_instance_is_taken_once(instance: Instance) -> None:
    clock = FakeClock()
    a = instance("a", runs_per_minute=3, clock=clock)
    b = instance("b", runs_per_minute=3, clock=clock)
    for _ in range(3):
        await a.start_run("alice")
    clock.advance(20)
    await b.start_run("alice")
    with pytest.raises(RateLimitedError):
        await a.start_run("alice")


async def test_concurrent_starts_on_two_instances_take_exactly_the_burst(
    instance: Instance,
) -> None:
    clock = FakeClock()
    a = instance("a", runs_per_minute=10, clock=clock)
    b = instance("b", runs_per_minute=10, clock=clock)
    results = await asyncio.gather(
        *((a if n % 2 else b).start_run("alice") for n in range(30)), return_exceptions=True
    )
    assert sum(result is None for result in results) == 10
    assert all(isinstance(result, RateLimitedError) for result in results if result is not None)


async def test_a_clock_behind_the_last_start_does_not_refill_the_bucket(
    instance: Instance,
) -> None:
    ahead, behind = FakeClock(), FakeClock()
    behind.advance(-30)
    a = instance("a", runs_per_minute=3, clock=ahead)
    b = instance("b", runs_per_minute=3, clock=behind)
    for _ in range(3):
        await a.start_run("alice")
    behind.advance(20)  # still 10 s behind the bucket's last update
    with pytest.raises(RateLimitedError):
        await b.start_run("alice")


@pytest.mark.parametrize(
    ("first", "second"),
    [("alice", "bob"), ("alice", None), (None, "alice"), ("-", None), ("a:b", "a%3Ab")],
)
async def test_each_owner_has_its_own_bucket(
    instance: Instance, first: str | None, second: str | None
) -> None:
    clock = FakeClock()
    a = instance("a", runs_per_minute=1, clock=clock)
    b = instance("b", runs_per_minute=1, clock=clock)
    await a.start_run(first)
    with pytest.raises(RateLimitedError):
        await b.start_run(first)
    await b.start_run(second)
    with pytest.raises(RateLimitedError):
        await a.start_run(second)


async def test_quota_keys_are_named_by_prefix_and_owner(
    instance: Instance, connect: Connect, any_redis_url: str
) -> None:
    a = instance("a")
    await a.start_run("alice")
    await a.start_run(None)
    async with a.stream("alice"):
        keys = await every_key(connect(any_redis_url))
    assert keys == {
        b"test:quota:{alice}:runs",
        b"test:quota:{-}:runs",
        b"test:quota:{alice}:streams",
    }


async def test_an_idle_bucket_key_expires_once_it_would_be_full(
    instance: Instance, connect: Connect, any_redis_url: str
) -> None:
    a = instance("a", runs_per_minute=60)
    await a.start_run("alice")
    # one token short of 60 at 1 per second: full again after 1 s, plus the skew margin
    ttl = await connect(any_redis_url).pttl("test:quota:{alice}:runs")
    assert 1000 < ttl <= 2000


# --- stream slots ---------------------------------------------------------------------------


async def test_stream_slots_hold_across_instances(instance: Instance) -> None:
    a = instance("a", max_streams=2)
    b = instance("b", max_streams=2)
    async with a.stream("alice"), b.stream("alice"):
        for quotas in (a, b):
            with pytest.raises(LimitExceededError, match="2 streams open"):
                async with quotas.stream("alice"):
                    pytest.fail("a third stream was opened")
        assert await a.open_streams("alice") == 2
        assert await b.open_streams("alice") == 2


async def test_a_refused_stream_takes_no_slot(instance: Instance) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    async with a.stream("alice"):
        for _ in range(3):
            with pytest.raises(LimitExceededError):
                async with b.stream("alice"):
                    pass
        assert await b.open_streams("alice") == 1
        assert b.held() == 0


async def test_stream_slots_are_per_owner(instance: Instance) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    async with a.stream("alice"), b.stream("bob"), a.stream(None):
        counts = [await b.open_streams(owner) for owner in ("alice", "bob", None, "carol")]
    assert counts == [1, 1, 1, 0]


async def test_a_slot_is_released_when_the_body_ends(instance: Instance) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    async with a.stream("alice"):
        assert a.held() == 1
    assert a.held() == 0
    assert await b.open_streams("alice") == 0
    async with b.stream("alice"):
        pass


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyError("k")])
async def test_a_slot_is_released_when_the_body_raises(
    instance: Instance, error: Exception
) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    with pytest.raises(type(error)):
        async with a.stream("alice"):
            raise error
    assert a.held() == 0
    async with b.stream("alice"):
        assert await b.open_streams("alice") == 1


async def test_a_slot_is_released_when_the_holding_task_is_cancelled(
    instance: Instance,
) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    task = await holding_task(a, "alice")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.held() == 0
    assert await b.open_streams("alice") == 0
    async with b.stream("alice"):
        pass


async def test_a_release_interrupted_by_a_second_cancellation_still_completes(
    instance: Instance,
) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    task = await holding_task(a, "alice")
    task.cancel()
    await asyncio.sleep(0)  # the task is now in its release
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def released() -> bool:
        return await b.open_streams("alice") == 0

    await wait_until(released)
    assert a.held() == 0


async def test_the_slot_of_an_instance_that_died_runs_out_after_the_ttl(
    instance: Instance,
) -> None:
    dead = instance("dead", max_streams=1, slot_ttl=0.3)
    alive = instance("alive", max_streams=1, slot_ttl=0.3)
    # The dead instance takes a slot and then neither releases nor renews it. The context is
    # kept referenced: collecting it would close the generator, and so release the slot,
    # which a dead process never does.
    abandoned = dead.stream("alice")
    await abandoned.__aenter__()
    started = time.monotonic()
    with pytest.raises(LimitExceededError):
        async with alive.stream("alice"):
            pass

    async def ran_out() -> bool:
        return await alive.open_streams("alice") == 0

    await wait_until(ran_out)
    assert time.monotonic() - started >= 0.25
    async with alive.stream("alice"):
        assert await alive.open_streams("alice") == 1
    await abandoned.__aexit__(None, None, None)


async def test_renew_keeps_slots_alive_past_the_ttl(instance: Instance) -> None:
    clock = FakeClock()  # the instances' clock scores the slots: no real waiting, no race
    a = instance("a", max_streams=1, slot_ttl=0.3, clock=clock)
    b = instance("b", max_streams=1, slot_ttl=0.3, clock=clock)
    async with a.stream("alice"), a.stream("bob"):
        # three ttls long, renewed every ttl / 3
        for _ in range(9):
            clock.advance(0.1)
            await a.renew()
        assert await b.open_streams("alice") == 1
        assert await b.open_streams("bob") == 1
        with pytest.raises(LimitExceededError):
            async with b.stream("alice"):
                pass


async def test_renew_does_not_bring_back_a_slot_that_ran_out(instance: Instance) -> None:
    clock = FakeClock()
    a = instance("a", max_streams=1, slot_ttl=1.0, clock=clock)
    b = instance("b", max_streams=1, slot_ttl=1.0, clock=clock)
    async with a.stream("alice"):
        clock.advance(1.5)  # a stalled past its ttl, and b took the slot meanwhile
        async with b.stream("alice"):
            await a.renew()
            assert await b.open_streams("alice") == 1


async def test_release_all_gives_back_every_slot_of_the_instance(instance: Instance) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    async with a.stream("alice"), a.stream("bob"):
        await a.release_all()
        assert a.held() == 0
        assert [await b.open_streams(owner) for owner in ("alice", "bob")] == [0, 0]
        async with b.stream("alice"):
            pass
    async with b.stream("bob"), a.stream("alice"):
        assert a.held() == 1


async def test_a_stream_ending_after_release_all_leaves_other_slots_alone(
    instance: Instance,
) -> None:
    a = instance("a", max_streams=1)
    b = instance("b", max_streams=1)
    async with contextlib.AsyncExitStack() as later:
        async with a.stream("alice"):
            await a.release_all()
            await later.enter_async_context(b.stream("alice"))
        assert await b.open_streams("alice") == 1
        assert b.held() == 1


async def test_active_run_slots_hold_across_instances_and_come_back_when_released(
    instance: Instance,
) -> None:
    a = instance("a", max_active_runs=2)
    b = instance("b", max_active_runs=2)
    first = await a.take_active_run("alice")
    await b.take_active_run("alice")
    with pytest.raises(LimitExceededError, match="max_active_runs_per_key"):
        await b.take_active_run("alice")
    await b.take_active_run("bob")  # another owner's
    a.release_active_run("alice", first)
    a.release_active_run("alice", first)  # given back once only

    async def released() -> bool:
        return await b.active_runs("alice") == 1

    await wait_until(released)
    await b.take_active_run("alice")
    assert (a.held(), b.held()) == (0, 3)


async def test_active_run_slots_are_renewed_and_those_of_a_dead_instance_run_out(
    instance: Instance,
) -> None:
    alive = instance("alive", max_active_runs=1, slot_ttl=0.3)
    dead = instance("dead", max_active_runs=1, slot_ttl=0.3)
    await alive.take_active_run("alice")
    await dead.take_active_run("bob")  # neither released nor renewed
    for _ in range(6):  # two ttls long, renewed every ttl / 3
        await asyncio.sleep(0.1)
        await alive.renew()
    assert await alive.active_runs("alice") == 1
    assert await alive.active_runs("bob") == 0
    await alive.take_active_run("bob")


async def test_release_all_gives_back_active_run_slots_and_later_releases_do_nothing(
    instance: Instance,
) -> None:
    a = instance("a", max_active_runs=1)
    b = instance("b", max_active_runs=1)
    slot = await a.take_active_run("alice")
    await a.release_all()
    taken = await b.take_active_run("alice")
    a.release_active_run("alice", slot)  # the run ends after the shutdown gave it back
    await a.release_all()
    assert await b.active_runs("alice") == 1
    b.release_active_run("alice", taken)
    await b.release_all()  # waits for the release under way
    assert await b.active_runs("alice") == 0


async def test_no_slot_leaks_after_many_acquire_cancel_and_error_cycles(
    instance: Instance,
) -> None:
    instances = [instance("a", max_streams=3), instance("b", max_streams=3)]
    owners = ["alice", "bob", None]
    rng = random.Random(7)

    async def use(quotas: RedisQuotas, owner: str | None, ending: str) -> None:
        with contextlib.suppress(LimitExceededError, RuntimeError):
            async with quotas.stream(owner):
                await asyncio.sleep(rng.random() * 0.005)
                if ending == "error":
                    raise RuntimeError("the stream failed")

    async def cycle() -> None:
        ending = rng.choice(["normal", "error", "cancel"])
        task = asyncio.create_task(use(rng.choice(instances), rng.choice(owners), ending))
        if ending == "cancel":
            # anywhere: before the acquire, during it, or while the body runs
            for _ in range(rng.randrange(6)):
                await asyncio.sleep(0)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def worker() -> None:
        for _ in range(10):
            await cycle()

    await asyncio.gather(*(worker() for _ in range(20)))
    assert [quotas.held() for quotas in instances] == [0, 0]
    for owner in owners:
        assert await instances[0].open_streams(owner) == 0


# --- Redis unreachable ----------------------------------------------------------------------


@pytest.fixture
async def on_own_redis(own_redis: RedisServer) -> AsyncIterator[RedisQuotas]:
    """Quotas on the test's own Redis, which the test may take away."""
    # One retry without backoff: redis-py's default retries with backoff would only reach
    # the call timeout (2 s) before giving up, which makes the test slow, not different.
    client = redis.asyncio.from_url(own_redis.url, retry=Retry(NoBackoff(), 1))
    lanes = StoreLanes(client)
    yield RedisQuotas(
        client,
        lanes=lanes,
        prefix=PREFIX,
        runs_per_minute=60,
        max_streams=1,
        slot_ttl=5.0,
        instance_id="a",
    )
    lanes.close()
    await client.aclose()


async def test_start_run_raises_store_unavailable_when_redis_is_down(
    own_redis: RedisServer, on_own_redis: RedisQuotas
) -> None:
    await on_own_redis.start_run("alice")
    own_redis.stop()
    with pytest.raises(StoreUnavailableError, match="Redis cannot be reached"):
        await on_own_redis.start_run("alice")


async def test_entering_a_stream_raises_store_unavailable_when_redis_is_down(
    own_redis: RedisServer, on_own_redis: RedisQuotas
) -> None:
    own_redis.stop()
    with pytest.raises(StoreUnavailableError, match="Redis cannot be reached"):
        async with on_own_redis.stream("alice"):
            pytest.fail("a stream was opened without Redis")
    assert on_own_redis.held() == 0


async def test_a_stream_ends_cleanly_when_redis_goes_away_while_it_is_open(
    own_redis: RedisServer, on_own_redis: RedisQuotas
) -> None:
    async with on_own_redis.stream("alice"):
        own_redis.kill()
    assert on_own_redis.held() == 0


async def test_a_redis_that_does_not_answer_is_unavailable_after_the_call_timeout(
    own_redis: RedisServer, on_own_redis: RedisQuotas
) -> None:
    on_own_redis.call_timeout = 0.3
    await on_own_redis.start_run("alice")
    own_redis.pause()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await on_own_redis.start_run("alice")
    with pytest.raises(StoreUnavailableError):
        async with on_own_redis.stream("alice"):
            pass
    assert time.monotonic() - started < 2.0
    own_redis.resume()


async def test_the_quotas_work_again_when_redis_comes_back(
    own_redis: RedisServer, on_own_redis: RedisQuotas
) -> None:
    own_redis.stop()
    with pytest.raises(StoreUnavailableError):
        await on_own_redis.start_run("alice")
    own_redis.start()
    await on_own_redis.start_run("alice")
    async with on_own_redis.stream("alice"):
        assert await on_own_redis.open_streams("alice") == 1
    assert await on_own_redis.open_streams("alice") == 0
