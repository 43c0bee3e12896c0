"""The event loop's histogram is exposed exactly as prometheus_client's own Histogram."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.telemetry.loop_histogram import LoopHistogram

BUCKETS = (0.001, 0.0025, 0.01, 0.5, 1, 10)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["up", "other"]),
            st.one_of(st.sampled_from(BUCKETS), st.floats(0, 100, allow_nan=False)),
        ),
        max_size=50,
    )
)
def test_the_exposition_is_that_of_a_prometheus_histogram(
    observations: list[tuple[str, float]],
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("gap_seconds", "Gaps", ["route"], buckets=BUCKETS, registry=theirs)
    loop_histogram = LoopHistogram("gap_seconds", "Gaps", "route", BUCKETS)
    ours.register(loop_histogram)
    for route, value in observations:
        histogram.labels(route).observe(value)
        loop_histogram.observe(route, value)
    # prometheus_client adds a _created sample per child; the rest must be the same bytes.
    expected = [line for line in generate_latest(theirs).splitlines() if b"_created" not in line]
    assert sorted(generate_latest(ours).splitlines()) == sorted(expected)
