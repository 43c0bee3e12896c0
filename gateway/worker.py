"""Which worker of a ``--workers N`` gateway this process is, and what each worker needs.

Pure: the supervisor (:mod:`gateway.supervisor`) starts the workers; this module says what
makes them one gateway (a shared store) and what tells them apart (a number, an instance id).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.settings import Settings
from streams.cluster.backend import instance_id_default

__all__ = ["Worker", "shared_store_problem"]


@dataclass(frozen=True, slots=True)
class Worker:
    """Worker ``index`` (1 to N) of a gateway of several processes on one port, known to the
    other instances (and in its logs, ``/readyz`` and ``/metrics``) as ``instance``."""

    index: int
    instance: str

    @classmethod
    def of(cls, settings: Settings, index: int) -> Worker:
        """Worker ``index`` under ``settings``: ``<instance_id>-w<index>`` when an instance id
        is configured (so a restarted host or StatefulSet pod recognises its workers' runs),
        else a name unique to this process (host-pid-random)."""
        if settings.instance_id:
            return cls(index, f"{settings.instance_id}-w{index}")
        return cls(index, instance_id_default())

    def settings(self, settings: Settings) -> Settings:
        """``settings`` as this worker runs them: its own instance id, one worker."""
        return settings.model_copy(update={"instance_id": self.instance, "workers": 1})


def shared_store_problem(settings: Settings) -> str | None:
    """Why ``settings`` cannot run their workers, or ``None``: several workers are one
    gateway only through a shared store (each keeps the runs it started; another worker finds
    them, their events and their cancels in Redis)."""
    if settings.workers > 1 and not settings.redis_url:
        return (
            f"--workers {settings.workers} needs a shared store: set GATEWAY_REDIS_URL (or "
            "redis_url); without it each worker would keep its own runs, and a resume or a "
            "cancel that lands on another worker would not find them"
        )
    return None
