"""A labelled Prometheus histogram for observations made on the event loop's hot path.

prometheus_client's ``Histogram`` is safe across threads: every observation takes a lock and
updates value objects. Observed for every upstream chunk, that was a sixteenth of the
gateway's CPU at 100 concurrent streams. Everything that observes this one runs on the event
loop's thread, and so does every scrape (``GET /metrics`` is served on the loop), so it keeps
plain counts and needs no lock. Its exposition is that of a ``Histogram``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["LoopHistogram"]


class _Counts:
    __slots__ = ("buckets", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0


class LoopHistogram(Collector):
    """``name{label=...}``: a histogram per label value. Observe from the event loop only."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self._bounds = sorted(float(bound) for bound in buckets)
        # Bounds written as prometheus_client writes them (the function is untyped).
        les: list[str] = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._les = [*les, "+Inf"]
        self._by_label: dict[str, _Counts] = {}

    def observe(self, label: str, value: float) -> None:
        counts = self._by_label.get(label)
        if counts is None:
            counts = self._by_label[label] = _Counts(len(self._les))
        # A value on a bound counts in that bucket (le: less than or equal).
        counts.buckets[bisect.bisect_left(self._bounds, value)] += 1
        counts.sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for label, counts in self._by_label.items():
            cumulative, total = [], 0
            for le, count in zip(self._les, counts.buckets, strict=True):
                total += count
                cumulative.append((le, float(total)))
            family.add_metric([label], cumulative, counts.sum)
        yield family
