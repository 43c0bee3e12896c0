"""What a store (a run directory, a quotas store) reports about itself.

Each store's statistics record is a frozen dataclass that renders itself: as JSON fields
for ``/readyz`` (:meth:`StoreStatistics.to_dict`) and as the metrics it has
(:meth:`StoreStatistics.metrics`), so the gateway shows any store's figures without
knowing which store it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["StoreMetric", "StoreStatistics"]


@dataclass(frozen=True, slots=True)
class StoreMetric:
    """One figure of a store, as a Prometheus gauge or counter."""

    name: str
    documentation: str
    value: float
    kind: Literal["gauge", "counter"] = "gauge"


class StoreStatistics(Protocol):
    """A store's statistics record (a frozen dataclass)."""

    def to_dict(self) -> dict[str, Any]:
        """The record's fields, in order, as JSON renders them."""

    def metrics(self) -> Sequence[StoreMetric]:
        """The record's figures as metrics (none for a store with nothing to add)."""
