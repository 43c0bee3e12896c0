"""A short soak in the normal suite: the full one is ``python -m tests.reliability.soak``."""

from __future__ import annotations

import asyncio

from tests.reliability.soak import MiB, soak
from tests.support import HEAVY

pytestmark = HEAVY


def test_a_short_soak_of_mixed_traffic_has_no_error_no_lost_event_and_flat_memory() -> None:
    report = asyncio.run(soak(seconds=15, rate=20))
    assert report.errors == []
    assert report.lost == []
    assert sum(report.scenarios.values()) == 15 * 20
    assert report.first_event, "no stream delivered an event"
    assert report.p99() < 2.0
    assert report.rss_growth() < 50 * MiB
