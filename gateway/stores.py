"""Where a gateway keeps what its runs share: this process's memory (the default), or Redis
shared by several instances (``redis_url``).

One object per choice, made once by the app from its settings, gives every store the gateway
needs: the runs' event logs, the run directory, the per-key quotas. Nothing else in the
gateway asks which one it has.

======================  ==========================  ======================================
store                   :class:`MemoryStores`       :class:`RedisStores`
======================  ==========================  ======================================
event log of a run      ``MemoryEventLog``          ``StoredEventLog`` (written to Redis)
run directory           ``LocalRunDirectory``       ``ClusterBackend`` (every instance's)
quotas                  ``MemoryQuotas``            ``RedisQuotas`` (held across instances)
AI SDK chats            ``MemoryChatDirectory``     ``RedisChatDirectory`` (every instance's)
======================  ==========================  ======================================
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol

from gateway.limits.quotas import MemoryQuotas, Quotas
from gateway.limits.redis_quotas import RedisQuotas
from gateway.settings import Settings
from streams.chats import ChatDirectory, MemoryChatDirectory, chat_ttl
from streams.cluster.backend import ClusterBackend, ClusterSettings, instance_id_default
from streams.cluster.chats import RedisChatDirectory
from streams.directory import LocalRunDirectory, RunDirectory
from streams.log import EventLog, MemoryEventLog, Retention
from streams.runs.manager import RunManager

__all__ = ["MemoryStores", "RedisStores", "Stores", "stores_for"]


class Stores(AbstractAsyncContextManager["Stores"], Protocol):
    """The stores of one gateway: entered before its run manager, left after it."""

    # The AI SDK face's chats: chat id -> its owner and the run of its latest turn, kept as
    # long as a finished run stays readable (the retention TTL).
    chats: ChatDirectory

    def log_factory(self, run_id: str, retention: Retention) -> EventLog:
        """A new run's event log."""

    def directory(self, manager: RunManager) -> RunDirectory:
        """The directory of runs, ``manager``'s and (shared) other instances'."""

    def quotas(self) -> Quotas:
        """The per-key quotas (an async context manager the app enters)."""


class MemoryStores:
    """Everything in this process: one instance."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.chats: ChatDirectory = MemoryChatDirectory(chat_ttl(settings.retention_ttl))

    async def __aenter__(self) -> MemoryStores:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def log_factory(self, run_id: str, retention: Retention) -> EventLog:
        return MemoryEventLog(run_id, retention)

    def directory(self, manager: RunManager) -> RunDirectory:
        return LocalRunDirectory(manager)

    def quotas(self) -> Quotas:
        settings = self._settings
        return MemoryQuotas(
            runs_per_minute=settings.runs_per_key_per_minute,
            max_streams=settings.max_streams_per_key,
            max_active_runs=settings.max_active_runs_per_key,
        )


class RedisStores:
    """Everything in Redis, shared by every instance with the same ``redis_url`` and
    ``redis_prefix``: logs any instance can read, runs any instance can find and cancel,
    quotas held across instances."""

    def __init__(self, settings: Settings, retention: Retention) -> None:
        assert settings.redis_url is not None
        self._settings = settings
        self._cluster = ClusterBackend(
            ClusterSettings(
                url=settings.redis_url,
                instance=settings.instance_id or instance_id_default(),
                prefix=settings.redis_prefix,
                lease_ttl=settings.lease_ttl,
                outage_grace=settings.redis_outage_grace,
                timeout=settings.redis_timeout,
                max_blocking_reads=settings.redis_max_blocking_reads,
            ),
            retention,
        )
        self.chats: ChatDirectory = RedisChatDirectory(
            self._cluster.redis,
            self._cluster.keys,
            ttl=chat_ttl(settings.retention_ttl),
            timeout=settings.redis_timeout,
        )

    async def __aenter__(self) -> RedisStores:
        await self._cluster.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._cluster.__aexit__(exc_type, exc, traceback)

    def log_factory(self, run_id: str, retention: Retention) -> EventLog:
        return self._cluster.log_factory(run_id, retention)

    def directory(self, manager: RunManager) -> RunDirectory:
        self._cluster.attach(manager)
        return self._cluster

    def quotas(self) -> Quotas:
        settings = self._settings
        return RedisQuotas(
            self._cluster.redis,
            lanes=self._cluster.lanes,
            prefix=settings.redis_prefix,
            runs_per_minute=settings.runs_per_key_per_minute,
            max_streams=settings.max_streams_per_key,
            max_active_runs=settings.max_active_runs_per_key,
            slot_ttl=settings.lease_ttl,
            instance_id=self._cluster.instance,
        )


def stores_for(settings: Settings, retention: Retention) -> Stores:
    """The stores ``settings`` choose: Redis with a ``redis_url``, memory without."""
    if settings.redis_url:
        return RedisStores(settings, retention)
    return MemoryStores(settings)
