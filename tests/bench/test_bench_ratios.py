"""How the bench compares the gateway with the floor: pairs measured back to back."""

from __future__ import annotations

import pytest

from bench.__main__ import gateway_parity, paired_difference, paired_ratio


def test_a_slow_spell_that_hits_both_sides_of_a_pair_does_not_move_the_ratio() -> None:
    floor = [60.0, 30.0, 58.0]  # the machine was slow for the second pair
    gateway = [54.0, 27.0, 40.0]
    assert paired_ratio(gateway, floor) == pytest.approx(0.9)
    # Medians taken apart would mix the pairs: 40 / 58.
    assert paired_ratio(gateway, floor) != pytest.approx(40.0 / 58.0)


def test_values_not_measured_in_pairs_compare_by_their_medians() -> None:
    assert paired_ratio([10.0, 20.0, 30.0], [40.0]) == pytest.approx(0.5)
    assert paired_difference([1.0, 2.0, 3.0], [0.5]) == pytest.approx(1.5)


def test_the_added_latency_is_the_median_of_the_differences_of_pairs() -> None:
    direct = [0.1, 0.4, 0.1]
    gateway = [1.2, 1.4, 1.3]
    assert paired_difference(gateway, direct) == pytest.approx(1.1)


@pytest.mark.parametrize(
    ("values", "bases"),
    [(None, [1.0]), ([1.0], None), ([], [1.0]), ([1.0], []), ([1.0], [0.0])],
)
def test_nothing_to_compare_gives_no_ratio(
    values: list[float] | None, bases: list[float] | None
) -> None:
    assert paired_ratio(values, bases) is None


def test_a_face_s_gateway_parity_is_its_gateway_over_the_chat_gateway_of_the_same_run() -> None:
    results = {
        ("messages", "delta_events_per_s_x1"): {"floor": [40.0], "gateway": [45.0, 50.0]},
        ("throughput", "chat_chunks_per_s_x1"): {"floor": [70.0], "gateway": [50.0, 50.0]},
    }
    assert gateway_parity(results, "messages") == {"delta_events_per_s_x1": pytest.approx(0.95)}
