"""Per-key quotas: the run-start token bucket and open-stream slots
(``gateway/limits/quotas.py``)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.limits.quotas import (
    MemoryQuotas,
    MemoryQuotaStatistics,
    Quotas,
    TokenBucket,
)
from streams.errors import LimitExceededError, RateLimitedError


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- TokenBucket ----------------------------------------------------------------------------


@pytest.mark.parametrize("burst", [1, 3, 10])
def test_a_full_bucket_gives_burst_tokens_at_once(burst: int) -> None:
    bucket = TokenBucket.full(rate=1.0, burst=burst, now=0.0)
    assert [bucket.take(0.0) for _ in range(burst)] == [0.0] * burst


@pytest.mark.parametrize(("rate", "wait"), [(1.0, 1.0), (2.0, 0.5), (0.1, 10.0)])
def test_an_empty_bucket_returns_the_wait_for_the_next_token(rate: float, wait: float) -> None:
    bucket = TokenBucket.full(rate=rate, burst=1, now=0.0)
    bucket.take(0.0)
    assert bucket.take(0.0) == pytest.approx(wait)


def test_the_wait_shrinks_as_the_bucket_refills() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=0.0)
    bucket.take(0.0)
    assert bucket.take(0.25) == pytest.approx(0.75)
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_a_refused_take_consumes_nothing() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=0.0)
    bucket.take(0.0)
    for _ in range(5):
        assert bucket.take(0.0) > 0
    assert bucket.take(1.0) == 0.0


@pytest.mark.parametrize("rate", [0.5, 1.0, 4.0])
def test_the_bucket_refills_at_its_rate(rate: float) -> None:
    bucket = TokenBucket.full(rate=rate, burst=1, now=0.0)
    bucket.take(0.0)
    assert bucket.take(1 / rate) == 0.0


def test_refill_is_proportional_to_elapsed_time() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=10, now=0.0)
    for _ in range(10):
        bucket.take(0.0)
    # 1.5 s at 2 tokens/s gives three tokens, and only three
    assert [bucket.take(1.5) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1.5) > 0


@pytest.mark.parametrize("idle", [10.0, 1000.0, 1e9])
def test_the_bucket_never_holds_more_than_burst(idle: float) -> None:
    bucket = TokenBucket.full(rate=5.0, burst=3, now=0.0)
    results = [bucket.take(idle) for _ in range(4)]
    assert results[:3] == [0.0, 0.0, 0.0]
    assert results[3] > 0
    assert bucket.tokens <= bucket.burst


# --- MemoryQuotas.start_run --------------------------------------------------------------------


def quotas(clock: FakeClock, runs_per_minute: float = 3, max_streams: int = 2) -> MemoryQuotas:
    return MemoryQuotas(runs_per_minute=runs_per_minute, max_streams=max_streams, clock=clock)


@pytest.mark.parametrize("runs_per_minute", [1, 3, 60])
async def test_runs_per_minute_may_start_in_a_burst(runs_per_minute: int) -> None:
    limits = quotas(FakeClock(), runs_per_minute=runs_per_minute)
    for _ in range(runs_per_minute):
        await limits.start_run("alice")


async def test_one_run_past_the_burst_is_rate_limited_with_retry_after() -> None:
    limits = quotas(FakeClock(), runs_per_minute=3)
    for _ in range(3):
        await limits.start_run("alice")
    with pytest.raises(RateLimitedError) as raised:
        await limits.start_run("alice")
    # 3 per minute: one token every 20 s
    assert raised.value.retry_after == pytest.approx(20.0)
    assert raised.value.code == "rate_limited"


async def test_the_rate_limit_message_names_the_limit_and_the_wait() -> None:
    limits = quotas(FakeClock(), runs_per_minute=3)
    for _ in range(3):
        await limits.start_run("alice")
    with pytest.raises(RateLimitedError, match=r"limit 3 per minute.*retry in 20\.0s"):
        await limits.start_run("alice")


async def test_rate_limited_is_a_limit_exceeded_error() -> None:
    assert issubclass(RateLimitedError, LimitExceededError)


@pytest.mark.parametrize(("first", "second"), [("alice", "bob"), ("alice", None), (None, "alice")])
async def test_each_owner_has_its_own_bucket(first: str | None, second: str | None) -> None:
    limits = quotas(FakeClock(), runs_per_minute=2)
    await limits.start_run(first)
    await limits.start_run(first)
    with pytest.raises(RateLimitedError):
        await limits.start_run(first)
    await limits.start_run(second)
    await limits.start_run(second)
    with pytest.raises(RateLimitedError):
        await limits.start_run(second)


async def test_the_bucket_refills_with_the_clock() -> None:
    clock = FakeClock()
    limits = quotas(clock, runs_per_minute=3)
    for _ in range(3):
        await limits.start_run("alice")
    clock.advance(19.9)
    with pytest.raises(RateLimitedError) as raised:
        await limits.start_run("alice")
    assert raised.value.retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    await limits.start_run("alice")
    with pytest.raises(RateLimitedError):
        await limits.start_run("alice")


async def test_a_long_pause_restores_only_the_burst() -> None:
    clock = FakeClock()
    limits = quotas(clock, runs_per_minute=3)
    for _ in range(3):
        await limits.start_run("alice")
    clock.advance(3600)
    for _ in range(3):
        await limits.start_run("alice")
    with pytest.raises(RateLimitedError):
        await limits.start_run("alice")


async def test_a_limit_below_one_per_minute_still_allows_one_run() -> None:
    clock = FakeClock()
    limits = quotas(clock, runs_per_minute=0.5)
    await limits.start_run("alice")
    with pytest.raises(RateLimitedError) as raised:
        await limits.start_run("alice")
    assert raised.value.retry_after == pytest.approx(120.0)


# --- MemoryQuotas.stream -----------------------------------------------------------------------


@pytest.mark.parametrize("max_streams", [1, 2, 5])
async def test_up_to_max_streams_may_be_open_at_once(max_streams: int) -> None:
    limits = quotas(FakeClock(), max_streams=max_streams)
    slots = [limits.stream("alice") for _ in range(max_streams)]
    for slot in slots:
        await slot.__aenter__()
    assert await limits.open_streams("alice") == max_streams
    for slot in slots:
        await slot.__aexit__(None, None, None)
    assert await limits.open_streams("alice") == 0


async def test_one_stream_past_the_limit_is_refused() -> None:
    limits = quotas(FakeClock(), max_streams=2)
    async with limits.stream("alice"), limits.stream("alice"):
        with pytest.raises(LimitExceededError, match="2 streams open"):
            async with limits.stream("alice"):
                pytest.fail("a third stream was opened")
        assert await limits.open_streams("alice") == 2


async def test_a_slot_is_released_when_the_body_ends() -> None:
    limits = quotas(FakeClock(), max_streams=1)
    async with limits.stream("alice"):
        assert await limits.open_streams("alice") == 1
    assert await limits.open_streams("alice") == 0
    async with limits.stream("alice"):
        pass


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyError("k"), asyncio.CancelledError()])
async def test_a_slot_is_released_when_the_body_raises(error: BaseException) -> None:
    limits = quotas(FakeClock(), max_streams=1)
    with pytest.raises(type(error)):
        async with limits.stream("alice"):
            raise error
    assert await limits.open_streams("alice") == 0
    async with limits.stream("alice"):
        assert await limits.open_streams("alice") == 1


async def test_a_refused_stream_takes_no_slot() -> None:
    limits = quotas(FakeClock(), max_streams=1)
    async with limits.stream("alice"):
        for _ in range(3):
            with pytest.raises(LimitExceededError):
                async with limits.stream("alice"):
                    pass
        assert await limits.open_streams("alice") == 1
    assert await limits.open_streams("alice") == 0


async def test_stream_counts_are_per_owner() -> None:
    limits = quotas(FakeClock(), max_streams=1)
    async with limits.stream("alice"), limits.stream("bob"), limits.stream(None):
        assert await limits.open_streams("alice") == 1
        assert await limits.open_streams("bob") == 1
        assert await limits.open_streams(None) == 1
        assert await limits.open_streams("carol") == 0
    assert [await limits.open_streams(o) for o in ("alice", "bob", None)] == [0, 0, 0]


async def test_an_owner_at_its_limit_does_not_block_another() -> None:
    limits = quotas(FakeClock(), max_streams=1)
    async with limits.stream("alice"):
        with pytest.raises(LimitExceededError):
            async with limits.stream("alice"):
                pass
        async with limits.stream("bob"):
            assert await limits.open_streams("bob") == 1


async def test_an_owner_without_streams_has_none_open() -> None:
    assert await quotas(FakeClock()).open_streams("nobody") == 0


# --- MemoryQuotas: active runs -----------------------------------------------------------------


async def test_an_owner_at_its_active_run_limit_is_refused_naming_it() -> None:
    limits = MemoryQuotas(runs_per_minute=60, max_streams=1, max_active_runs=2)
    await limits.take_active_run("alice")
    await limits.take_active_run("alice")
    with pytest.raises(LimitExceededError, match="max_active_runs_per_key"):
        await limits.take_active_run("alice")
    assert await limits.active_runs("alice") == 2


async def test_active_runs_are_per_owner_and_come_back_when_released() -> None:
    limits = MemoryQuotas(runs_per_minute=60, max_streams=1, max_active_runs=1)
    await limits.take_active_run("alice")
    await limits.take_active_run(None)
    await limits.take_active_run("bob")
    limits.release_active_run("alice")
    assert [await limits.active_runs(o) for o in ("alice", "bob", None)] == [0, 1, 1]
    await limits.take_active_run("alice")


# --- MemoryQuotas as a Quotas store -----------------------------------------------------------


def test_memory_quotas_are_a_quotas_store() -> None:
    store: Quotas = MemoryQuotas(runs_per_minute=60, max_streams=1)
    assert store is not None


async def test_a_stream_slot_taken_is_given_back_by_its_slot() -> None:
    limits = MemoryQuotas(runs_per_minute=60, max_streams=1)
    slot = await limits.take_stream("alice")
    with pytest.raises(LimitExceededError):
        await limits.take_stream("alice")
    await limits.release_stream("alice", slot)
    assert await limits.open_streams("alice") == 0


async def test_an_active_run_slot_is_given_back_without_waiting() -> None:
    limits = MemoryQuotas(runs_per_minute=60, max_streams=1, max_active_runs=1)
    slot = await limits.take_active_run("alice")
    limits.release_active_run("alice", slot)
    assert await limits.active_runs("alice") == 0


async def test_the_statistics_count_every_owners_slots() -> None:
    limits = MemoryQuotas(runs_per_minute=60, max_streams=2)
    await limits.take_stream("alice")
    await limits.take_stream(None)
    await limits.take_active_run("bob")
    stats = limits.statistics()
    assert stats == MemoryQuotaStatistics(open_streams=2, active_runs=1)
    assert stats.to_dict() == {"open_streams": 2, "active_runs": 1}


async def test_the_memory_store_enters_and_exits_without_giving_back_anything() -> None:
    limits = MemoryQuotas(runs_per_minute=60, max_streams=1)
    async with limits as entered:
        await entered.take_stream("alice")
    assert await limits.open_streams("alice") == 1
