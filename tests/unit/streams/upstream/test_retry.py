"""Specification of the retry helpers of the upstream client (``retry_after_seconds``,
``backoff_delay`` in ``streams/upstream/client.py``) and of the per-route circuit breaker
(``streams/upstream/breaker.py``), with injected randomness and a fake clock."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import CircuitOpenError, UpstreamError
from streams.upstream.breaker import BreakerState, BreakerStatistics, CircuitBreaker
from streams.upstream.client import backoff_delay, retry_after_seconds
from streams.upstream.route import RetryPolicy

# 2015-10-21 07:28:00 UTC, the date of RFC 9110's examples.
WHEN = float(calendar.timegm((2015, 10, 21, 7, 28, 0)))


# -- retry_after_seconds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("120", 120.0, id="integer"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="float"),
        pytest.param("  7 ", 7.0, id="surrounding-space"),
    ],
)
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize("value", ["-5", "-0.5"])
def test_negative_retry_after_is_zero(value: str) -> None:
    assert retry_after_seconds(value) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Wed, 21 Oct 2015 07:30:00 GMT", id="imf-fixdate"),
        pytest.param("Wednesday, 21-Oct-15 07:30:00 GMT", id="rfc850"),
        pytest.param("Wed, 21 Oct 2015 09:30:00 +0200", id="numeric-offset"),
    ],
)
def test_retry_after_http_date_is_seconds_from_now(value: str) -> None:
    assert retry_after_seconds(value, now=WHEN) == 120.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:27:00 GMT", now=WHEN) == 0.0


def test_retry_after_http_date_is_relative_to_the_wall_clock_without_now() -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))

    seconds = retry_after_seconds(date)

    assert seconds is not None
    assert 3500 < seconds <= 3600


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("soon", id="word"),
        pytest.param("0x10", id="hex"),
        pytest.param("Wed, 99 Foo 2015", id="broken-date"),
        pytest.param("12 seconds", id="number-with-unit"),
    ],
)
def test_retry_after_that_is_no_delay_or_date_is_none(value: str | None) -> None:
    assert retry_after_seconds(value, now=WHEN) is None


@pytest.fixture
def local_time_five_hours_behind_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "XST+05")  # POSIX rule: needs no tz database
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_five_hours_behind_utc")
def test_retry_after_imf_fixdate_does_not_depend_on_the_local_time_zone() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:30:00 GMT", now=WHEN) == 120.0


@pytest.mark.usefixtures("local_time_five_hours_behind_utc")
def test_retry_after_asctime_date_is_gmt_whatever_the_local_time_zone() -> None:
    # RFC 9110 5.6.7: recipients must accept the obsolete asctime format too; it is in GMT.
    assert retry_after_seconds("Wed Oct 21 07:30:00 2015", now=WHEN) == 120.0


# -- backoff_delay -------------------------------------------------------------------------

POLICY = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=8.0, max_retry_after=30.0)


class Rand:
    """A stand-in for ``random.uniform`` that records its bounds and picks a fixed
    fraction of the range."""

    def __init__(self, fraction: float = 1.0) -> None:
        self.fraction = fraction
        self.calls: list[tuple[float, float]] = []

    def __call__(self, low: float, high: float) -> float:
        self.calls.append((low, high))
        return low + self.fraction * (high - low)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (20, 8.0)],
)
def test_backoff_ceiling_doubles_per_attempt_up_to_max_delay(attempt: int, ceiling: float) -> None:
    rand = Rand(1.0)

    assert backoff_delay(POLICY, attempt, None, rand) == ceiling
    assert rand.calls == [(0.0, ceiling)]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_backoff_is_full_jitter_between_zero_and_the_ceiling(fraction: float) -> None:
    assert backoff_delay(POLICY, 3, None, Rand(fraction)) == fraction * 2.0


@given(
    attempt=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.001, max_value=5.0),
    max_delay=st.floats(min_value=0.001, max_value=60.0),
)
@settings(max_examples=100, deadline=None)
def test_backoff_with_real_jitter_stays_within_the_ceiling(
    attempt: int, base: float, max_delay: float
) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=max_delay)

    delay = backoff_delay(policy, attempt, None)

    assert 0.0 <= delay <= min(max_delay, base * 2 ** (attempt - 1))


def test_retry_after_longer_than_the_jitter_is_waited_for() -> None:
    assert backoff_delay(POLICY, 1, 5.0, Rand(1.0)) == 5.0


def test_jitter_longer_than_retry_after_is_kept() -> None:
    assert backoff_delay(POLICY, 5, 1.0, Rand(1.0)) == 8.0


def test_retry_after_of_zero_leaves_the_jitter() -> None:
    assert backoff_delay(POLICY, 2, 0.0, Rand(0.5)) == 0.5


def test_retry_after_beyond_max_retry_after_is_capped() -> None:
    assert backoff_delay(POLICY, 1, 3600.0, Rand(0.0)) == 30.0


def test_retry_after_may_exceed_max_delay_up_to_max_retry_after() -> None:
    assert backoff_delay(POLICY, 1, 20.0, Rand(0.0)) == 20.0


# -- CircuitBreaker ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("gpt", failure_threshold=3, reset_timeout=10.0, clock=clock)


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.before_request()
        breaker.record_failure()


def test_new_breaker_is_closed_and_lets_requests_through(breaker: CircuitBreaker) -> None:
    breaker.before_request()

    assert breaker.state is BreakerState.CLOSED
    assert breaker.statistics() == BreakerStatistics(BreakerState.CLOSED, 0, 0)


def test_failures_below_the_threshold_keep_it_closed(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()

    breaker.before_request()
    assert breaker.statistics() == BreakerStatistics(BreakerState.CLOSED, 2, 0)


def test_threshold_consecutive_failures_open_it(breaker: CircuitBreaker) -> None:
    open_breaker(breaker)

    assert breaker.state is BreakerState.OPEN
    assert breaker.statistics() == BreakerStatistics(BreakerState.OPEN, 3, 1)


def test_threshold_of_one_opens_on_the_first_failure(clock: Clock) -> None:
    breaker = CircuitBreaker("r", failure_threshold=1, reset_timeout=5.0, clock=clock)

    breaker.record_failure()

    assert breaker.state is BreakerState.OPEN


def test_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()

    assert breaker.state is BreakerState.CLOSED
    assert breaker.statistics().consecutive_failures == 2


def test_open_breaker_refuses_requests_with_the_time_left(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    open_breaker(breaker)
    clock.advance(4.0)

    with pytest.raises(CircuitOpenError, match=r"route 'gpt' is open.*in 6\.0s") as raised:
        breaker.before_request()

    assert raised.value.retry_after == pytest.approx(6.0)


def test_circuit_open_error_is_an_upstream_error_not_worth_retrying(
    breaker: CircuitBreaker,
) -> None:
    open_breaker(breaker)

    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_request()

    assert isinstance(raised.value, UpstreamError)
    assert raised.value.code == "circuit_open"
    assert raised.value.retryable is False


def test_breaker_stays_open_until_the_reset_timeout_has_passed(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    open_breaker(breaker)
    clock.advance(9.999)

    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_request()


def test_breaker_is_half_open_once_the_reset_timeout_has_passed(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    open_breaker(breaker)
    clock.advance(10.0)

    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.statistics().state is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_probe_through(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    clock.advance(10.0)

    assert breaker.before_request() is True  # the probe
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_request()  # a concurrent request while the probe runs

    assert raised.value.retry_after == 0.0
    assert breaker.state is BreakerState.HALF_OPEN


def test_successful_probe_closes_the_breaker(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    clock.advance(10.0)
    probe = breaker.before_request()

    breaker.record_success(probe)

    assert breaker.statistics() == BreakerStatistics(BreakerState.CLOSED, 0, 1)
    breaker.before_request()
    breaker.before_request()


def test_failed_probe_opens_the_breaker_for_another_reset_timeout(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    open_breaker(breaker)
    clock.advance(10.0)
    probe = breaker.before_request()

    breaker.record_failure(probe)

    assert breaker.state is BreakerState.OPEN
    assert breaker.statistics().opened == 2
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_request()
    assert raised.value.retry_after == pytest.approx(10.0)
    clock.advance(10.0)
    breaker.before_request()  # the next probe


def test_released_probe_lets_another_request_probe(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    clock.advance(10.0)
    breaker.before_request()

    breaker.release_probe()

    breaker.before_request()
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_request()


def test_statistics_count_each_opening(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    for _ in range(2):
        clock.advance(10.0)
        breaker.record_failure(breaker.before_request())
    clock.advance(10.0)
    breaker.record_success(breaker.before_request())
    open_breaker(breaker)

    assert breaker.statistics() == BreakerStatistics(BreakerState.OPEN, 3, 4)


def test_failures_while_already_open_do_not_count_as_another_opening(
    breaker: CircuitBreaker,
) -> None:
    open_breaker(breaker)

    breaker.record_failure()  # a request sent before it opened, failing late

    assert breaker.statistics() == BreakerStatistics(BreakerState.OPEN, 4, 1)


def test_only_the_probe_decides_a_half_open_breaker(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    clock.advance(10.0)
    probe = breaker.before_request()

    breaker.record_failure()  # a straggler sent before the breaker opened
    breaker.record_success()

    assert breaker.state is BreakerState.HALF_OPEN  # still waiting for the probe's verdict
    with pytest.raises(CircuitOpenError):
        breaker.before_request()
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED


def test_requests_through_a_closed_breaker_are_not_probes(breaker: CircuitBreaker) -> None:
    assert breaker.before_request() is False
