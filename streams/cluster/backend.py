"""Several gateway instances sharing runs through Redis.

:class:`ClusterBackend` is what one instance runs beside its
:class:`~streams.runs.manager.RunManager`:

- the **registry**: each run's owner, instance, status, spec and snapshot in a hash, so that
  ``GET /v1/runs/{id}`` answers on any instance (:meth:`ClusterBackend.get` gives a local
  :class:`~streams.runs.run.Run`, or a :class:`RemoteRun` whose log is read from Redis);
- the **writer** (:class:`~streams.cluster.log.LogWriter`) that puts the events of this
  instance's runs in Redis Streams;
- **cancel anywhere**: a cancel for a run of another instance is published on that
  instance's control channel (sharded pub/sub: on a Redis Cluster it lives on the node of
  the instance's keys), whose listener here cancels the run's task group;
- **approve anywhere**: an answer to a tool call's approval for a run of another instance
  goes over that channel too, and the outcome comes back on a reply list
  (:mod:`streams.cluster.approvals`);
- the **lease**: a key with a TTL this instance renews. Every instance sweeps for instances
  whose lease has expired and ends their runs with ``run.failed`` (``instance_lost``), in a
  Lua script over the run's keys only (one slot on a cluster) that also fences the dead
  instance out: its event ids are taken, so were it only slow, its next write fails and it
  stops the run;
- **store health**: the lease renewal doubles as a health check. Redis unreachable for
  ``outage_grace`` seconds makes the instance unavailable (readiness false): its runs end
  with ``run.failed`` (``store_unavailable``), which its readers get from memory; once Redis
  answers again the instance registers itself again and takes runs.

State machine of the store connection::

    available ──(no answer for outage_grace)──▶ unavailable ──(answer)──▶ available
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streams.approvals import ApprovalAnswer
from streams.cleanup import finish_shielded
from streams.cluster.approvals import (
    approval_command,
    encode_outcome,
    is_reply_token,
    parse_answer,
    raise_for_outcome,
)
from streams.cluster.client import (
    StoreClient,
    close_client,
    next_shard_message,
    ready_client,
    store_client,
)
from streams.cluster.keys import Keys
from streams.cluster.lanes import StoreLanes
from streams.cluster.log import (
    STORE_ERRORS,
    LogWriter,
    RemoteEventLog,
    StoredEventLog,
    raise_if_cancelling,
)
from streams.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RunBusyError,
    RunFinishedError,
    StoreUnavailableError,
)
from streams.events import Event, EventType, dumps
from streams.log import EventLog, Retention
from streams.runs.manager import RunManager
from streams.runs.run import Run, RunStatus, is_run_id
from streams.spec import OnDisconnect, RunSpec
from streams.statistics import StoreMetric
from streams.view import RunView

__all__ = [
    "ClusterBackend",
    "ClusterSettings",
    "ClusterStatistics",
    "RemoteRun",
    "instance_id_default",
    "unavailable",
]

logger = logging.getLogger("streams.cluster")

# Ends a run of a lost instance unless the run already ended: KEYS[1] its hash, KEYS[2] its
# stream, KEYS[3] its producers (one slot: the run's tag); ARGV: seq, event, snapshot, TTL.
# The caller checked the instance's lease before, and takes the run out of the instance's
# runs after (other slots). The event's id is the run's next seq: should the instance only
# have been slow (or have renewed its lease since the check), its own next write (a smaller
# or equal id) fails, and it stops the run (LogTakenOverError).
_FAIL_LOST = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == false or status == 'completed' or status == 'failed' or status == 'cancelled' then
  return 'ended'
end
local added = redis.pcall('XADD', KEYS[2], ARGV[1] .. '-0', 'e', ARGV[2])
if type(added) == 'table' and added.err then return 'retry' end
redis.call('HSET', KEYS[1], 'status', 'failed', 'last_seq', ARGV[1], 'snapshot', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 'failed'
"""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    url: str
    instance: str
    prefix: str = "gw:"
    lease_ttl: float = 10.0  # seconds an instance's lease lasts without renewal
    outage_grace: float = 3.0  # seconds of no answer before the store counts as gone
    timeout: float = 2.0  # bound on one store call (blocking reads add their block time)
    max_blocking_reads: int = 1000  # readers of other instances' runs waiting at once
    max_connections: int = 100  # for everything else (writes, registry, quotas, lease)


def unavailable(exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"the shared store (Redis) is unavailable: {exc}")


class RemoteRun:
    """A run another instance is running, as the registry and its stream show it: a
    :class:`~streams.view.RunView`. Its readers are not counted (its instance does not know
    them), and it has no client tool calls waiting here."""

    def __init__(self, record: dict[str, Any], log: RemoteEventLog, backend: ClusterBackend):
        snapshot: dict[str, Any] = record["snapshot"]
        self.instance = str(record["instance"])
        self.id = str(snapshot["run_id"])
        self.owner: str | None = snapshot.get("owner")
        self.spec = RunSpec.model_validate_json(record["spec"])
        self.log: RemoteEventLog = log
        self.on_disconnect: OnDisconnect = snapshot["on_disconnect"]
        self._backend = backend
        self._apply(snapshot)

    def _apply(self, snapshot: dict[str, Any]) -> None:
        self._record = snapshot
        self.status = RunStatus(snapshot["status"])
        self.created_at: float = snapshot["created_at"]
        self.started_at: float | None = snapshot["started_at"]
        self.ended_at: float | None = snapshot["ended_at"]
        self.output: Any = snapshot["output"]
        self.error: dict[str, str] | None = snapshot["error"]
        self.cancel_reason: str | None = snapshot["cancel_reason"]

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    def snapshot(self, *, producers: bool = True) -> dict[str, Any]:
        snapshot = dict(self._record)
        snapshot["last_seq"] = max(int(snapshot.get("last_seq") or 0), self.log.last_seq)
        snapshot.setdefault("metadata", self.spec.metadata)
        if not producers:
            snapshot.pop("producers", None)
        return snapshot

    def resolve_client_tool(
        self, call_id: str, output: Any = None, error: str | None = None
    ) -> None:
        """A run of another instance waits for no result here (as a local run that is not
        waiting for this call answers)."""
        raise InvalidRequestError(f"run {self.id} is not waiting for a result of call {call_id!r}")

    async def wait(self) -> None:
        """Follow the run's stream until its terminal event, then refresh the snapshot."""
        cursor = self.log.last_seq
        while not self.done:
            batch = await self.log.read(cursor, limit=1000, timeout=None)
            if batch.events:
                cursor = batch.events[-1].seq
            if batch.closed:
                record = await self._backend.record(self.id)
                if record is not None:
                    self._apply(record["snapshot"])
                if not self.done and batch.events:  # the registry lags: take the event's word
                    self._apply_terminal(batch.events[-1])
                return

    def _apply_terminal(self, event: Event) -> None:
        record = dict(self._record)
        record["status"] = {
            EventType.RUN_COMPLETED: "completed",
            EventType.RUN_FAILED: "failed",
            EventType.RUN_CANCELLED: "cancelled",
        }.get(event.type, record["status"])
        record["ended_at"] = event.ts
        record["error"] = event.data.get("error", record["error"])
        self._apply(record)


class ClusterBackend:
    """One instance's part in a cluster of gateways sharing Redis (see the module doc).

    Use as an async context manager after the manager is made; it owns its tasks (writer,
    lease and health, sweeper, control listener) in one task group.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        retention: Retention,
        *,
        client: StoreClient | None = None,
    ) -> None:
        self.settings = settings
        self.instance = settings.instance
        self.keys = Keys(settings.prefix)
        self.retention = retention
        self.redis: StoreClient = client or store_client(
            settings.url, max_connections=settings.max_connections, timeout=settings.timeout
        )
        # Blocking reads (other instances' runs followed with XREAD) hold a connection while
        # they wait: they get a pool of their own, bounded, so they can never starve the
        # writer and the lease of connections.
        self.reader_redis: StoreClient = store_client(
            settings.url, max_connections=settings.max_blocking_reads, timeout=settings.timeout
        )
        self.available = False
        self._manager: RunManager | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._own_tasks: list[asyncio.Task[None]] = []
        self._failed_since: float | None = None
        self._fail_lost = self.redis.register_script(_FAIL_LOST)
        # The commands on the way of every run and event (the writer's, the quotas' takes)
        # go on pipelined connections of their own (streams.cluster.lanes).
        self.lanes = StoreLanes(self.redis)
        self.writer = LogWriter(
            self.redis,
            self.keys,
            retention,
            instance=self.instance,
            lanes=self.lanes,
            write_timeout=settings.timeout,
            on_taken_over=self._taken_over,
            on_store_error=self._store_error,
        )
        self.lost_runs_failed = 0
        self.cancels_forwarded = 0
        self.cancels_recovered = 0
        self.approvals_forwarded = 0
        self._check_now = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def attach(self, manager: RunManager) -> None:
        self._manager = manager

    def log_factory(self, run_id: str, retention: Retention) -> EventLog:
        return StoredEventLog(run_id, retention, self.writer)

    async def __aenter__(self) -> ClusterBackend:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        await self._heartbeat_once()
        self._own_tasks = [
            self._tasks.create_task(self.writer.run(), name="cluster-writer"),
            self._tasks.create_task(self._heartbeat(), name="cluster-lease"),
            self._tasks.create_task(self._sweep(), name="cluster-sweeper"),
            self._tasks.create_task(self._listen(), name="cluster-control"),
        ]
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tasks is not None
        # Let what the runs wrote last reach Redis (bounded), then stop everything.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.timeout):
                await self.writer.flushed()
        for task in self._own_tasks:
            task.cancel()
        await self._tasks.__aexit__(*exc_info)
        self._tasks = None
        with contextlib.suppress(*STORE_ERRORS):
            async with asyncio.timeout(self.settings.timeout):
                await self.redis.delete(self.keys.lease(self.instance))
        self.lanes.close()
        await close_client(self.redis)
        await close_client(self.reader_redis)

    # -- the registry ---------------------------------------------------------------------

    async def register(self, run: Run) -> None:
        """Record a run this instance has just started; raise (and stop the run) if the
        store cannot take it, so no client is told of a run other instances cannot see."""
        if not self.available:
            self._stop_unregistered(run)
            raise StoreUnavailableError("the shared store (Redis) is unavailable; try again")
        # Each batch of the run's events carries its state; its first, the registration too
        # (the fields of its hash that never change, and its place in the instance's runs):
        # the run's first events go in the same round trip.
        assert isinstance(run.log, StoredEventLog)
        run.log.snapshot = functools.partial(_registry_snapshot, run)
        run.watch_producers(run.log.producer_changed)
        fields = [
            b"owner",
            (run.owner or "").encode(),
            b"instance",
            self.instance.encode(),
            b"spec",
            run.spec.model_dump_json().encode(),
        ]
        registered = self.writer.register(run.log, fields)
        try:
            async with asyncio.timeout(self.settings.timeout):
                await registered  # a waiter that leaves cancels it: the writer then lets it be
        except (*STORE_ERRORS, StoreUnavailableError) as exc:
            self._stop_unregistered(run)
            raise unavailable(exc) from exc

    def _stop_unregistered(self, run: Run) -> None:
        assert self._manager is not None
        with contextlib.suppress(RunFinishedError, NotFoundError):
            run.cancel("store unavailable")

    async def record(self, run_id: str) -> dict[str, Any] | None:
        """The run's registry entry (its ``snapshot`` parsed, with its producers), or None."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                pipe = self.redis.pipeline(transaction=False)
                pipe.hgetall(self.keys.run(run_id))
                pipe.hgetall(self.keys.producers(run_id))
                raw, producers = await pipe.execute()
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if not raw or b"snapshot" not in raw or b"spec" not in raw:
            return None
        record: dict[str, Any] = {
            k.decode(): v.decode() for k, v in raw.items() if k != b"snapshot"
        }
        snapshot = record["snapshot"] = orjson.loads(raw[b"snapshot"])
        if producers or "producers" not in snapshot:
            entries = sorted(orjson.loads(value) for value in producers.values())
            snapshot["producers"] = [info for _, info in entries]
        return record

    async def get(self, run_id: str, owner: str | None) -> Run | RemoteRun:
        """``owner``'s run, on this instance or another; another owner's run is not found."""
        return await self._find(run_id, owner, check=True)

    async def get_unchecked(self, run_id: str) -> Run | RemoteRun:
        """The run, on this instance or another, whoever owns it."""
        return await self._find(run_id, None, check=False)

    async def answer_approval(self, run_id: str, call_id: str, answer: ApprovalAnswer) -> None:
        """Deliver the answer to the run's call wherever the run runs: here directly; on
        another instance through its control channel, waiting (bounded) for the outcome
        that instance's :meth:`~streams.runs.run.Run.answer_approval` gave, raised here as
        the same error (see :mod:`streams.cluster.approvals`). Its instance lost: not found
        (the run ends as lost); not answering: the store is unavailable."""
        run = await self.get_unchecked(run_id)
        if isinstance(run, Run):
            run.answer_approval(call_id, answer)
            return
        token = secrets.token_hex(16)
        message = approval_command(run_id, call_id, answer, token)
        try:
            async with asyncio.timeout(self.settings.timeout):
                receivers = await self.redis.spublish(self.keys.control(run.instance), message)
                alive = receivers or await self.redis.exists(self.keys.lease(run.instance))
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if not receivers:
            if alive:  # its listener is reconnecting, most likely
                raise StoreUnavailableError(
                    f"the instance running run {run_id} takes no commands now; try again"
                )
            if run.done:
                raise NotFoundError(
                    f"run {run_id} has ended: no call {call_id!r} waits for approval"
                )
            try:
                await self._fail_runs_of_lost(run.instance, only=run_id)
            except STORE_ERRORS as exc:
                raise unavailable(exc) from exc
            raise NotFoundError(
                f"run {run_id} has no call {call_id!r} waiting: its instance is lost"
            )
        self.approvals_forwarded += 1
        wait = self.settings.timeout
        try:
            # A blocking read: it holds a connection while it waits, from the readers' pool.
            async with asyncio.timeout(wait + 1.0):
                popped = await self.reader_redis.blpop([self.keys.reply(token)], timeout=wait)
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if popped is None:
            raise StoreUnavailableError(
                f"the instance running run {run_id} did not answer within {wait:g}s; the "
                "answer may or may not have been taken (a retry says which)"
            )
        raise_for_outcome(popped[1])

    async def _find(self, run_id: str, owner: str | None, *, check: bool) -> Run | RemoteRun:
        assert self._manager is not None
        try:
            return (
                self._manager.get(run_id, owner) if check else self._manager.get_unchecked(run_id)
            )
        except NotFoundError:
            pass
        if not is_run_id(run_id):  # before it goes into a key name
            raise NotFoundError(f"no run {run_id!r}")
        record = await self.record(run_id)
        if record is None or (check and (record["owner"] or None) != owner):
            raise NotFoundError(f"no run {run_id!r}")
        newest = await self._newest_event(run_id)
        terminal = newest is not None and newest.is_terminal
        log = RemoteEventLog(
            self.reader_redis,
            self.keys,
            run_id,
            # Reader cursors are checked against last_seq: the stream's newest id. A stream
            # whose newest event is terminal is closed: a reader at its end gets the end at
            # once, not a wait for events that will never come.
            last_seq=newest.seq if newest is not None else 0,
            closed=terminal,
            block=min(2.0, self.settings.timeout),
            timeout=self.settings.timeout,
        )
        run = RemoteRun(record, log, self)
        if terminal and not run.done:  # the registry lags: take the event's word
            assert newest is not None
            run._apply_terminal(newest)
        return run

    async def _stream_last_seq(self, run_id: str) -> int:
        newest = await self._newest_event(run_id)
        return newest.seq if newest is not None else 0

    async def _newest_event(self, run_id: str) -> Event | None:
        """The newest event in the run's stream (none if it has none)."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                newest: Any = await self.redis.xrevrange(self.keys.events(run_id), count=1)
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if not newest:
            return None
        _, fields = newest[0]
        return Event.from_json(fields[b"e"])

    async def cancel(self, run_id: str, reason: str, owner: str | None) -> Run | RemoteRun:
        """Cancel ``owner``'s run wherever it runs: here directly, elsewhere through the
        control channel of its instance (or, if that instance is lost, end it here).

        A cancel for another instance is first recorded in that instance's cancels (a hash
        of run id -> reason, in the same round trip as the message): pub/sub delivers to
        whoever listens at that moment and to nobody else, so a message published while the
        instance's subscription reconnects is gone. The instance takes its cancels on every
        lease renewal (:meth:`_take_cancels`), so a cancel lands within a lease interval
        even when the message is lost.
        """
        assert self._manager is not None
        run = await self.get(run_id, owner)
        if isinstance(run, Run):
            return self._manager.cancel(run_id, reason, owner)
        if run.done:
            raise RunFinishedError(f"run {run_id} has already {run.status.value}")
        message = orjson.dumps({"op": "cancel", "run_id": run_id, "reason": reason})
        cancels = self.keys.cancels(run.instance)
        try:
            async with asyncio.timeout(self.settings.timeout):
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(cancels, run_id, reason)
                pipe.pexpire(cancels, self._cancels_ttl_ms)
                pipe.spublish(self.keys.control(run.instance), message)
                *_, receivers = await pipe.execute()
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        self.cancels_forwarded += 1
        if not receivers:
            # Nobody listens there: if its lease is gone too, end the run now (else the
            # recorded cancel waits for its next lease renewal).
            await self._fail_runs_of_lost(run.instance, only=run_id)
        return run

    @property
    def _cancels_ttl_ms(self) -> int:
        # Long enough for the instance to take them (a renewal every lease_ttl / 4 at most)
        # or to be found lost (lease_ttl): then its runs end anyway and the cancels go.
        return max(1000, math.ceil(self.settings.lease_ttl * 2 * 1000))

    async def _take_cancels(self, cancels: dict[bytes, bytes]) -> None:
        """Cancel the runs other instances recorded cancels for (see :meth:`cancel`), then
        remove those entries. A run already cancelled (the message came) or ended is left
        as it is; one that was not is a cancel the message did not deliver."""
        assert self._manager is not None
        for raw_id, raw_reason in cancels.items():
            with contextlib.suppress(NotFoundError, RunFinishedError):
                run = self._manager.get_unchecked(_text(raw_id))
                if run.cancel_reason is None and not run.done:
                    self.cancels_recovered += 1
                    logger.warning(
                        "run %s: cancel taken from the store (its message was not delivered)",
                        run.id,
                    )
                run.cancel(_text(raw_reason))
        # A cancel recorded again meanwhile for the same run is for a run cancelled now.
        async with asyncio.timeout(self.settings.timeout):
            await self.redis.hdel(self.keys.cancels(self.instance), *cancels)
        raise_if_cancelling()

    async def delete(self, run_id: str, owner: str | None) -> None:
        """Forget ``owner``'s ended run: its registry entry and log in Redis, and the copy
        its instance holds (here directly, elsewhere through its control channel)."""
        assert self._manager is not None
        run = await self.get(run_id, owner)
        if not run.done:
            raise RunBusyError(f"run {run_id} is still {run.status.value}: cancel it first")
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self.redis.delete(
                    self.keys.run(run_id), self.keys.producers(run_id), self.keys.events(run_id)
                )
                if not isinstance(run, Run):
                    message = orjson.dumps({"op": "forget", "run_id": run_id})
                    await self.redis.spublish(self.keys.control(run.instance), message)
        except STORE_ERRORS as exc:
            raise unavailable(exc) from exc
        raise_if_cancelling()
        if isinstance(run, Run):
            self._manager.forget(run)

    # -- tasks ------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = max(0.05, min(self.settings.lease_ttl / 4, 1.0))
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._check_now.wait()
            self._check_now.clear()
            try:
                await self._heartbeat_once()
            except Exception:  # a bug must not stop the lease (the instance would be lost)
                logger.exception("renewing the lease failed")

    async def _heartbeat_once(self) -> None:
        """Renew the lease (which also tells whether Redis answers)."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                # Before anything else uses them (a no-op once done): see ready_client.
                await ready_client(self.redis)
                await ready_client(self.reader_redis)
                pipe = self.redis.pipeline(transaction=False)
                pipe.set(
                    self.keys.lease(self.instance),
                    b"1",
                    px=max(1, int(self.settings.lease_ttl * 1000)),
                )
                pipe.sadd(self.keys.instances, self.instance)
                pipe.hgetall(self.keys.cancels(self.instance))
                *_, cancels = await pipe.execute()
        except STORE_ERRORS as exc:
            self._store_error(exc)
            return
        self._failed_since = None
        if not self.available:
            try:
                await self._end_runs_left_behind()
            except STORE_ERRORS as exc:
                self._store_error(exc)
                return
            self.available = True
            self.writer.go_online()
            logger.info("shared store reachable: instance %s available", self.instance)
        if cancels and self._manager is not None:
            try:
                await self._take_cancels(cancels)
            except STORE_ERRORS as exc:  # taken again with the next renewal: no loss
                self._store_error(exc)

    async def _end_runs_left_behind(self) -> None:
        """Runs registered under this instance's id that it is not running: left by an
        earlier process with the same id (a restart), or ended here while the store was
        gone. Nobody else would end them (this instance's lease is alive): end them now."""
        active = set(self._manager.active_run_ids) if self._manager is not None else set()
        async with asyncio.timeout(self.settings.timeout):
            members = await self.redis.smembers(self.keys.instance_runs(self.instance))
        for run_id in sorted(_text(m) for m in members):
            if run_id not in active:
                async with asyncio.timeout(self.settings.timeout * 2):
                    await self._fail_lost_run(
                        self.instance,
                        run_id,
                        own=True,
                        why="restarted or lost the shared store while running it",
                    )

    def _store_error(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._failed_since is None:
            self._failed_since = now
            self._check_now.set()
            logger.warning("shared store error: %s", exc)
        if self.available and now - self._failed_since >= self.settings.outage_grace:
            self._go_unavailable(exc)

    def _go_unavailable(self, exc: BaseException) -> None:
        self.available = False
        logger.error(
            "shared store unavailable for %.1fs (%s): ending this instance's runs",
            self.settings.outage_grace,
            exc,
        )
        self.writer.go_offline()
        if self._manager is not None:
            for run_id in self._manager.active_run_ids:
                self._manager.abort(
                    run_id, "store_unavailable", "the shared store (Redis) became unavailable"
                )

    def _taken_over(self, run_id: str) -> None:
        if self._manager is not None:
            self._manager.abort(
                run_id,
                "instance_lost",
                "instance lost: another instance ended this run while this one was unreachable",
            )

    async def _sweep(self) -> None:
        interval = max(0.05, min(self.settings.lease_ttl / 10, 2.0))
        while True:
            await asyncio.sleep(interval)
            if not self.available:
                continue
            try:
                await self._sweep_once()
            except STORE_ERRORS as exc:
                self._store_error(exc)
            except Exception:  # a bug must not stop the sweeping (nor the other tasks)
                logger.exception("sweeping for lost instances failed")

    async def _sweep_once(self) -> None:
        async with asyncio.timeout(self.settings.timeout):
            members = await self.redis.smembers(self.keys.instances)
            others = sorted(_text(m) for m in members if _text(m) != self.instance)
            if not others:
                return
            pipe = self.redis.pipeline(transaction=False)
            for other in others:
                pipe.exists(self.keys.lease(other))
            alive = await pipe.execute()
        for other, exists in zip(others, alive, strict=True):
            if not exists:
                await self._fail_runs_of_lost(other)

    async def _fail_runs_of_lost(self, instance: str, only: str | None = None) -> None:
        # A bound per step, not for the whole sweep: a lost instance may have had many runs.
        timeout = self.settings.timeout
        async with asyncio.timeout(timeout):
            if await self.redis.exists(self.keys.lease(instance)):
                return
            members = await self.redis.smembers(self.keys.instance_runs(instance))
        for run_id in sorted(_text(m) for m in members):
            if only is None or run_id == only:
                async with asyncio.timeout(timeout * 2):
                    await self._fail_lost_run(instance, run_id)
        if only is None:
            async with asyncio.timeout(timeout):
                if not await self.redis.scard(self.keys.instance_runs(instance)):
                    await self.redis.srem(self.keys.instances, instance)

    async def _fail_lost_run(
        self, instance: str, run_id: str, *, own: bool = False, why: str = ""
    ) -> None:
        for _ in range(5):
            record = await self.record(run_id)
            if record is None:
                await self.redis.srem(self.keys.instance_runs(instance), run_id)
                return
            seq = await self._stream_last_seq(run_id) + 1
            error = {
                "code": "instance_lost",
                "message": f"instance lost: {instance} {why or 'stopped renewing its lease'}",
            }
            now = time.time()
            event = Event.create(seq, run_id, EventType.RUN_FAILED, now, None, {"error": error})
            snapshot = record["snapshot"]
            snapshot.pop("producers", None)  # they have a key of their own
            snapshot.update(status="failed", ended_at=now, error=error, last_seq=seq)
            if not own and await self.redis.exists(self.keys.lease(instance)):
                return  # it came back
            answer = await self._fail_lost(
                keys=[
                    self.keys.run(run_id),
                    self.keys.events(run_id),
                    self.keys.producers(run_id),
                ],
                args=[seq, event.json, dumps(snapshot), max(1, int(self.retention.ttl))],
            )
            if answer == b"retry":
                continue
            # Another slot than the run's: after the run's end, so a crash between the two
            # leaves an ended run in the set, which the next sweep takes out ('ended').
            await self.redis.srem(self.keys.instance_runs(instance), run_id)
            if answer == b"failed":
                self.lost_runs_failed += 1
                logger.warning("run %s of lost instance %s ended as failed", run_id, instance)
            return

    async def _listen(self) -> None:
        """Take commands for this instance's runs from its control channel."""
        delay = 0.05
        subscribed_before = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self.settings.timeout):
                    # Sharded pub/sub: on a cluster the channel lives on its slot's node
                    # (with the instance's keys); a failover or a resharding that moves it
                    # ends this subscription with an error, and the loop subscribes again.
                    await pubsub.ssubscribe(self.keys.control(self.instance))
                delay = 0.05
                if subscribed_before:
                    # What was published while nobody listened here is gone: take the
                    # cancels recorded meanwhile now (the lease renewal does), not a renewal
                    # later. (The first time, the start's own renewal has just done it.)
                    self._check_now.set()
                subscribed_before = True
                while True:
                    async with asyncio.timeout(self.settings.timeout + 1.0):
                        message = await next_shard_message(pubsub, timeout=1.0)
                    if message is not None and message.get("type") == "smessage":
                        await self._command(message["data"])
            except Exception as exc:
                if not isinstance(exc, STORE_ERRORS):
                    logger.exception("the control channel listener failed")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                await finish_shielded(
                    pubsub.aclose(),  # type: ignore[no-untyped-call]
                    timeout=1.0,
                    name="close-control-channel",
                    expected=STORE_ERRORS,
                )

    async def _command(self, raw: bytes) -> None:
        try:
            command = orjson.loads(raw)
            run_id, reason = str(command["run_id"]), str(command.get("reason") or "cancelled")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("ignoring a malformed control message: %r", raw[:200])
            return
        if self._manager is None:
            return
        if command.get("op") == "approve":
            await self._answer_here(run_id, command)
        elif command.get("op") == "cancel":
            with contextlib.suppress(NotFoundError, RunFinishedError):
                self._manager.get_unchecked(run_id).cancel(reason)
        elif command.get("op") == "forget":
            with contextlib.suppress(NotFoundError, RunBusyError):
                self._manager.forget(self._manager.get_unchecked(run_id))

    async def _answer_here(self, run_id: str, command: dict[str, Any]) -> None:
        """Deliver an answer another instance took for a run of this one, and push the
        outcome to its reply list. Done in the listener, not in a task of its own: answers
        are resolved in the order they came, and the push is one bounded round trip."""
        assert self._manager is not None
        reply = command.get("reply")
        if not is_reply_token(reply):
            logger.warning("ignoring an approve command without a reply token")
            return
        error: GatewayError | None = None
        try:
            answer = parse_answer(command.get("answer"))
            call_id = command.get("call_id")
            if not isinstance(call_id, str):
                raise InvalidRequestError("call_id must be a string")
            self._manager.get_unchecked(run_id).answer_approval(call_id, answer)
        except GatewayError as exc:
            error = exc
        key = self.keys.reply(reply)
        try:
            async with asyncio.timeout(self.settings.timeout):
                pipe = self.redis.pipeline(transaction=True)
                pipe.lpush(key, encode_outcome(error))
                # The asker waits `timeout` at most: the list outlives that, then goes.
                pipe.expire(key, max(1, math.ceil(self.settings.timeout * 2)))
                await pipe.execute()
        except STORE_ERRORS as exc:
            logger.warning("could not reply to an approve command for run %s: %s", run_id, exc)
        raise_if_cancelling()

    # -- readers ----------------------------------------------------------------------------

    def attach_reader(self, run: RunView) -> None:
        """Count a reader of a run of this instance; one of another instance is not counted
        (its instance does not know this instance's readers)."""
        if isinstance(run, Run):
            assert self._manager is not None
            self._manager.attach_reader(run)

    def detach_reader(self, run: RunView) -> None:
        if isinstance(run, Run):
            assert self._manager is not None
            self._manager.detach_reader(run)

    def statistics(self) -> ClusterStatistics:
        return ClusterStatistics(
            instance=self.instance,
            store_available=self.available,
            pending_events=self.writer.pending,
            written_events=self.writer.written,
            write_batches=self.writer.batches,
            lost_runs_failed=self.lost_runs_failed,
            cancels_forwarded=self.cancels_forwarded,
            cancels_recovered=self.cancels_recovered,
            approvals_forwarded=self.approvals_forwarded,
        )


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    """One instance's part in the cluster, as ``/readyz`` and the metrics show it."""

    instance: str
    store_available: bool
    pending_events: int  # appended, not yet written to Redis
    written_events: int
    write_batches: int
    lost_runs_failed: int  # runs of lost instances this instance ended
    cancels_forwarded: int  # cancels sent to the instance running the run
    cancels_recovered: int  # cancels of this instance's runs taken from the store, undelivered
    approvals_forwarded: int  # approval answers sent to the instance running the run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def metrics(self) -> Sequence[StoreMetric]:
        return (
            StoreMetric(
                "gateway_store_available",
                "1 while the shared store (Redis) answers",
                int(self.store_available),
            ),
            StoreMetric(
                "gateway_store_pending_events",
                "Events appended but not yet written to the shared store",
                self.pending_events,
            ),
            StoreMetric(
                "gateway_store_written_events",
                "Events written to the shared store",
                self.written_events,
                "counter",
            ),
            StoreMetric(
                "gateway_store_write_batches",
                "Round trips that wrote events (several events each under load)",
                self.write_batches,
                "counter",
            ),
            StoreMetric(
                "gateway_lost_instance_runs_failed",
                "Runs of lost instances this instance ended with run.failed",
                self.lost_runs_failed,
                "counter",
            ),
            StoreMetric(
                "gateway_cancels_forwarded",
                "Cancels sent to the instance running the run",
                self.cancels_forwarded,
                "counter",
            ),
            StoreMetric(
                "gateway_cancels_recovered",
                "Cancels of this instance's runs taken from the shared store that the "
                "control channel had not delivered",
                self.cancels_recovered,
                "counter",
            ),
            StoreMetric(
                "gateway_approvals_forwarded",
                "Approval answers sent to the instance running the run",
                self.approvals_forwarded,
                "counter",
            ),
        )


def _registry_snapshot(run: Run) -> dict[str, Any]:
    """What the registry's ``snapshot`` field holds of ``run``: its snapshot but for its
    producers (a key of their own, each written when it changes) and its metadata (in its
    spec, which never changes). Written with each batch of the run's events, so its size
    must not grow with the run."""
    snapshot = run.snapshot(producers=False)
    del snapshot["metadata"]
    return snapshot


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def instance_id_default() -> str:
    """host-pid-random: unique per process, and says where to look."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
