"""Event logs in Redis Streams.

On the instance running a run, :class:`StoredEventLog` keeps the run's events in memory (its
own readers read them there, with no round trip) and hands each one to the instance's
:class:`LogWriter`, which writes every pending event of every run in one write per round
trip (group commit), on the store's lanes (:mod:`streams.cluster.lanes`). An event becomes
visible to readers only once Redis has it, so a reader never sees an event that a reader on
another instance could not: a client that resumes elsewhere finds everything it was shown.

On every other instance, :class:`RemoteEventLog` follows the run's stream with blocking
``XREAD`` from the reader's cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from streams.cluster.client import StoreClient
from streams.cluster.keys import Keys
from streams.cluster.lanes import StoreLanes
from streams.cluster.scripts import WRITE_EVENTS, WRITE_EVENTS_SHA, write_events_args
from streams.errors import LogTakenOverError, StoreUnavailableError
from streams.events import Event, EventType, dumps
from streams.log import Batch, EventLog, Gap, LogStatistics, MemoryEventLog, Retention
from streams.runs.run import ProducerInfo

__all__ = [
    "STORE_ERRORS",
    "LogWriter",
    "RemoteEventLog",
    "StoredEventLog",
    "close_quietly",
    "raise_if_cancelling",
]

logger = logging.getLogger("streams.cluster")

STORE_ERRORS = (RedisError, OSError, TimeoutError)

# Loop steps the writer lets go by once woken from idle before it takes its batch, so that
# events made a task step or a few apart go in one round trip. A run's start: its task
# appends run.started in the step that registers it, its first producer message.started in
# the next; no more, the producer's next steps send its upstream request, best overlapped
# with this round trip (its first output must not find it still in flight). An output event
# (a delta): none, a reader is waiting for it: sent in the step that appends it, if nothing
# is in flight (else with the next batch, which is taken as soon as the last is written: a
# stream of deltas goes a few per round trip). Anything else (a run's end:
# message.completed, run.completed): three.
PROMPT_STEPS = 1  # a run's start (or an output event a lane could not take at once)
COALESCE_STEPS = 3
OUTPUT_TYPES = frozenset(
    {
        EventType.MESSAGE_DELTA,
        EventType.REASONING_DELTA,
        EventType.TOOL_CALL_DELTA,
        EventType.TOOL_DELTA,
    }
)


def raise_if_cancelling() -> None:
    """Stop a task that was asked to stop even if the call it was in swallowed the cancel.

    redis-py awaits its commands through ``asyncio.wait_for``, which on Python 3.11 returns
    the result when the command completes just as the task is cancelled, losing the cancel
    (CPython gh-86296, fixed in 3.12). A stream whose client left would then go on reading
    (and holding its quota slot) until its run ends. Called after each such await.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class StoredEventLog(MemoryEventLog):
    """The owner's copy of a run's log; events are visible once written to Redis."""

    def __init__(self, run_id: str, retention: Retention, writer: LogWriter) -> None:
        super().__init__(run_id, retention)
        self._writer = writer
        # The run's snapshot as GET /v1/runs/{id} shows it on other instances, but for what
        # grows with the run (its producers) or never changes (its metadata, in its spec);
        # written with each batch of events (set by the backend once the run exists).
        self.snapshot: Callable[[], dict[str, Any]] | None = None
        # The producers changed since the last write (only they are written with the next
        # batch, so a batch costs the same however many producers the run has), and each
        # producer's place among the run's producers.
        self._changed: dict[str, ProducerInfo] = {}
        self._order: dict[str, int] = {}
        # The run's registration (the fields of its hash that never change), written with
        # its next batch, and the future its registering waits on (see LogWriter.register).
        self.registration: list[bytes] | None = None
        self.registered: asyncio.Future[None] | None = None

    def producer_changed(self, info: ProducerInfo) -> None:
        """Write ``info`` with the next batch (a :meth:`~streams.runs.run.Run.watch_producers`
        callback)."""
        self._order.setdefault(info.id, len(self._order))
        self._changed[info.id] = info

    def take_changed_producers(self) -> dict[str, ProducerInfo]:
        """The producers changed since the last call, for the writer."""
        changed, self._changed = self._changed, {}
        return changed

    def return_changed_producers(self, changed: Mapping[str, ProducerInfo]) -> None:
        """Give back what a write that failed took (it is written with the next batch)."""
        for producer, info in changed.items():
            self._changed.setdefault(producer, info)

    def encode_producers(self, changed: Mapping[str, ProducerInfo]) -> dict[Any, Any]:
        """``changed`` as the fields of the run's producers hash."""
        return {
            producer: dumps([self._order[producer], info.to_dict()])
            for producer, info in changed.items()
        }

    async def append(
        self,
        type: EventType,
        producer: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        if self._writer.full:
            await self._writer.room()  # the writer is behind (Redis is slow): wait for it
        return self.append_nowait(type, producer, data)

    def on_appended(self, event: Event) -> None:
        self._writer.enqueue(self, event)

    def show_held(self) -> None:
        """Make every event held here visible, written or not (the store is gone: this
        instance's readers get the run's end from memory)."""
        self.publish(self.appended_seq)


class LogWriter:
    """Writes the owner's pending events to Redis: one task, one batch in flight at a time.

    A batch is sent by the writer task, or at once by the step that appends an output event
    to an idle writer (see :data:`PROMPT_STEPS`); the writer task finishes it either way.

    Bounded: past ``max_pending`` events, :meth:`StoredEventLog.append` waits (producers
    slow down with Redis instead of piling up memory). ``on_taken_over`` is told when a
    log's stream already holds a later event (another instance ended the run);
    ``on_store_error`` when a write failed (the events stay pending and are retried).
    """

    def __init__(
        self,
        redis: StoreClient,
        keys: Keys,
        retention: Retention,
        *,
        instance: str,
        lanes: StoreLanes,
        max_pending: int = 10_000,
        write_timeout: float = 5.0,
        on_taken_over: Callable[[str], None],
        on_store_error: Callable[[BaseException], None],
    ) -> None:
        self._redis = redis
        self._lanes = lanes
        self._keys = keys
        self._retention = retention
        self._instance = instance
        self._max_pending = max_pending
        self._write_timeout = write_timeout
        self._on_taken_over = on_taken_over
        self._on_store_error = on_store_error
        self._pending: dict[StoredEventLog, list[Event]] = {}
        self._count = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._drained = asyncio.Event()
        self.offline = False  # the store is gone: events are shown without being written
        # Nothing in flight nor failed (the writer task waits for events, or lets a few
        # steps go by before it takes them): an output event is then sent at once.
        self._idle = False
        self._sent: _Sent | None = None  # a batch sent at once, for the writer to finish
        self.batches = 0
        self.written = 0

    @property
    def full(self) -> bool:
        return self._count >= self._max_pending

    @property
    def pending(self) -> int:
        return self._count

    @property
    def idle(self) -> bool:
        """Nothing in flight nor pending: the next output event is sent at once."""
        return self._idle and not self._count

    async def flushed(self) -> None:
        """Wait until nothing is pending (or the store is gone)."""
        while self._count and not self.offline:
            self._drained.clear()
            await self._drained.wait()

    async def room(self) -> None:
        while self.full:
            self._room.clear()
            await self._room.wait()

    def enqueue(self, log: StoredEventLog, event: Event) -> None:
        if self.offline:
            log.show_held()
            return
        self._pending.setdefault(log, []).append(event)
        self._count += 1
        if self._idle and event.type in OUTPUT_TYPES:
            # A reader waits for it and nothing is in flight: sent in this step, not the
            # writer task's next (other tasks' steps, a producer reading on, come first).
            self._send_now()
        self._wakeup.set()

    def _send_now(self) -> None:
        """Send what is pending at once, for the writer task to finish (see :meth:`run`);
        left to the writer task if a lane it needs is not connected yet."""
        taken: dict[StoredEventLog, _Taken] = {}
        batch = self._pending
        try:
            commands, plan = self._commands(batch, taken)
            futures = self._lanes.send_nowait(commands)
        except Exception as exc:
            # A lane dropped, say (maybe with part of the batch sent): the writer task
            # handles it as any failed write (a producer's append must not raise it).
            self._sent = _Sent(batch, taken, [], [], [], exc)
        else:
            if futures is None:
                _give_back(taken)
                return
            self._sent = _Sent(batch, taken, commands, plan, futures)
        self._pending = {}
        self._idle = False

    def register(self, log: StoredEventLog, fields: list[bytes]) -> asyncio.Future[None]:
        """Write ``fields`` (alternating names and values) to the run's hash, and add the run
        to the instance's runs, with the log's next batch: one round trip with its first
        events, rather than one of its own before them. The future is done once they are
        written (failed with :class:`~streams.errors.StoreUnavailableError` if the store
        goes first)."""
        registered = log.registered = asyncio.get_running_loop().create_future()
        if self.offline:
            registered.set_exception(StoreUnavailableError("the shared store is unavailable"))
            return registered
        log.registration = fields
        self._pending.setdefault(log, [])
        self._wakeup.set()
        return registered

    def go_offline(self) -> None:
        """The store is gone: show every held event, and from now on write nothing."""
        self.offline = True
        pending, self._pending, self._count = self._pending, {}, 0
        self._room.set()
        self._drained.set()
        for log in pending:
            log.show_held()
            _registered(log, StoreUnavailableError("the shared store (Redis) is unavailable"))

    def go_online(self) -> None:
        self.offline = False

    async def run(self) -> None:
        """The writer task (owned by the backend's task group)."""
        retry = False
        delay = 0.05
        while True:
            sent, self._sent = self._sent, None
            if sent is None and not self._pending:
                self._idle = True
                self._wakeup.clear()
                await self._wakeup.wait()
                for _ in range(self._steps_to_wait()):
                    if self._sent is not None:
                        break
                    await asyncio.sleep(0)
                continue
            self._idle = False
            if sent is None:
                batch, self._pending = self._pending, {}
            else:
                batch = sent.batch
            try:
                await self._write(batch, retry, sent)
            except Exception as exc:
                # Never let the writer die (its runs would wait forever for their events to
                # show): an error that is not Redis's is logged and handled like one.
                if not isinstance(exc, STORE_ERRORS):
                    logger.exception("writing events to the shared store failed")
                if self.offline:
                    for log in batch:
                        _registered(log, StoreUnavailableError(f"the shared store is gone: {exc}"))
                    continue
                # Put the batch back in front of what came meanwhile, in order, and retry.
                for log, events in self._pending.items():
                    batch.setdefault(log, []).extend(events)
                self._pending = batch
                retry = True
                self._on_store_error(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            retry = False
            delay = 0.05
            written = sum(len(events) for events in batch.values())
            self._count -= written
            self.written += written
            self.batches += 1
            if not self.full:
                self._room.set()
            if not self._count:
                self._drained.set()

    def _steps_to_wait(self) -> int:
        """Loop steps to let go by before taking the batch of an idle spell's first events."""
        pending = self._pending
        starting = any(log.registration is not None for log in pending)
        if starting or any(e.type in OUTPUT_TYPES for events in pending.values() for e in events):
            return PROMPT_STEPS
        return COALESCE_STEPS

    async def _write(
        self, batch: dict[StoredEventLog, list[Event]], retry: bool, sent: _Sent | None
    ) -> None:
        # The producers and registrations each log's write takes: given back if it fails.
        taken: dict[StoredEventLog, _Taken] = {} if sent is None else sent.taken
        try:
            try:
                if sent is None:
                    await self._write_batch(batch, retry, taken)
                else:
                    await self._finish(sent, retry)
            except NoScriptError:
                # Redis restarted (or its scripts were flushed): load the script and write
                # the batch again, as a retry (what the first attempt wrote is no loss).
                _give_back(taken)
                async with asyncio.timeout(self._write_timeout):
                    await self._redis.script_load(WRITE_EVENTS)
                await self._write_batch(batch, True, taken)
        except BaseException:
            _give_back(taken)
            raise

    async def _write_batch(
        self,
        batch: dict[StoredEventLog, list[Event]],
        retry: bool,
        taken: dict[StoredEventLog, _Taken],
    ) -> None:
        commands, plan = self._commands(batch, taken)
        async with asyncio.timeout(self._write_timeout):
            # In one write (per node, on a cluster), on the lanes: redis-py's pipeline would
            # cost about as much CPU again as the commands, on the way of every event.
            results = await self._lanes.execute_many(commands)
        self._written(batch, retry, plan, results)

    async def _finish(self, sent: _Sent, retry: bool) -> None:
        """Write what :meth:`_send_now` sent: wait for its replies and show what they say."""
        if sent.error is not None:
            raise sent.error
        async with asyncio.timeout(self._write_timeout):
            results = await self._lanes.replies(sent.commands, sent.futures)
        self._written(sent.batch, retry, sent.plan, results)

    def _commands(
        self, batch: dict[StoredEventLog, list[Event]], taken: dict[StoredEventLog, _Taken]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[StoredEventLog, int]]]:
        """The commands that write ``batch`` (what each log's takes recorded in ``taken``),
        and each log's script's place among them."""
        keys = self._keys
        ttl = max(1, int(self._retention.ttl))
        maxlen = self._retention.max_events
        commands: list[tuple[Any, ...]] = []  # each with its arguments
        plan: list[tuple[StoredEventLog, int]] = []  # each log and its script's place
        for log, events in batch.items():
            run_id = log.run_id
            registration, log.registration = log.registration, None
            changed = log.take_changed_producers()
            taken[log] = (changed, registration)
            if registration is not None:
                # Before the run's hash: a run in the instance's runs without one is mended
                # by the sweep, a run whose instance does not list it would not be.
                commands.append(("SADD", keys.instance_runs(self._instance), run_id))
            last = events[-1].seq if events else log.last_seq
            fields = [*(registration or ()), b"last_seq", b"%d" % last]
            if log.snapshot is not None:
                snapshot = log.snapshot()
                fields += (b"status", snapshot["status"].encode(), b"snapshot", dumps(snapshot))
            encoded = log.encode_producers(changed) if changed else {}
            terminal = bool(events) and events[-1].is_terminal
            args = write_events_args(events, fields, encoded, maxlen, ttl if terminal else 0)
            # Every key of the script is the run's (one hash tag): one slot on a cluster.
            keys_ = (keys.events(run_id), keys.run(run_id), keys.producers(run_id))
            plan.append((log, len(commands)))
            commands.append(("EVALSHA", WRITE_EVENTS_SHA, 3, *keys_, *args))
            if terminal:
                # Another tag (the instance's): a command of its own, not in the script.
                commands.append(("SREM", keys.instance_runs(self._instance), run_id))
        return commands, plan

    def _written(
        self,
        batch: dict[StoredEventLog, list[Event]],
        retry: bool,
        plan: list[tuple[StoredEventLog, int]],
        results: list[Any],
    ) -> None:
        """Show what a write's ``results`` say was written (raise what failed)."""
        if any(isinstance(r, NoScriptError) for r in results):
            raise NoScriptError("the events script is not loaded")
        for result in results:
            if isinstance(result, Exception):
                raise result
        for log, index in plan:
            _registered(log)
            result = results[index]
            # After a failed round trip some of these may already be in: that is no loss.
            if result and not retry:
                logger.warning("run %s: its stream was ended elsewhere (%s)", log.run_id, result)
                log.show_held()
                self._on_taken_over(log.run_id)
                continue
            if batch[log]:
                log.publish(batch[log][-1].seq)


# What a log's write took from it: its changed producers and its registration.
_Taken = tuple[dict[str, ProducerInfo], list[bytes] | None]


@dataclass(slots=True)
class _Sent:
    """A batch sent at once by :meth:`LogWriter.enqueue`, for the writer task to finish."""

    batch: dict[StoredEventLog, list[Event]]
    taken: dict[StoredEventLog, _Taken]
    commands: list[tuple[Any, ...]]
    plan: list[tuple[StoredEventLog, int]]
    futures: list[asyncio.Future[Any]]
    error: Exception | None = None  # sending failed (some of it may have gone)


def _give_back(taken: dict[StoredEventLog, _Taken]) -> None:
    """Give each log back what a write that failed took (written with its next batch)."""
    for log, (changed, registration) in taken.items():
        log.return_changed_producers(changed)
        if registration is not None and log.registration is None:
            log.registration = registration
    taken.clear()


def _registered(log: StoredEventLog, error: BaseException | None = None) -> None:
    """Tell whoever waits for ``log``'s registration that it is written (or failed)."""
    registered = log.registered
    if registered is None or (error is None and log.registration is not None):
        return  # none asked for, or not written yet
    log.registered = log.registration = None
    if registered.done():
        return  # its waiter gave up
    if error is None:
        registered.set_result(None)
    else:
        registered.set_exception(error)


class RemoteEventLog(EventLog):
    """A run's log read from Redis by an instance that is not running the run."""

    def __init__(
        self,
        redis: StoreClient,
        keys: Keys,
        run_id: str,
        *,
        last_seq: int,
        closed: bool,
        block: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self.run_id = run_id
        self._redis = redis
        self._stream = keys.events(run_id)
        self._last_seq = last_seq
        self._closed = closed
        self._block = block  # longest single XREAD block (below the client's socket timeout)
        self._timeout = timeout
        self._waiting = 0

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def closed(self) -> bool:
        return self._closed

    async def append(
        self,
        type: EventType,
        producer: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        raise LogTakenOverError(f"run {self.run_id} runs on another instance")

    async def read(self, after: int, *, limit: int = 1024, timeout: float | None = None) -> Batch:
        if after < 0:
            raise ValueError("cursor must be >= 0")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            block: float | None
            if timeout == 0 or self._closed:
                block = None
            else:
                left = self._block if deadline is None else deadline - loop.time()
                block = max(0.001, min(self._block, left))
            entries = await self._xread(after, limit, block)
            if entries:
                return self._batch(after, entries)
            if block is None or (deadline is not None and loop.time() >= deadline):
                return Batch([], None, self._closed and after >= self._last_seq)

    async def _xread(self, after: int, limit: int, block: float | None) -> list[Any]:
        self._waiting += 1
        try:
            async with asyncio.timeout((block or 0) + self._timeout):
                answer: Any = await self._redis.xread(
                    {self._stream: f"{after}-0"},
                    count=limit,
                    block=None if block is None else max(1, int(block * 1000)),
                )
        except STORE_ERRORS as exc:
            raise StoreUnavailableError(f"the shared store (Redis) is unavailable: {exc}") from exc
        finally:
            self._waiting -= 1
        raise_if_cancelling()
        if not answer:
            return []
        # [[stream, [(id, {field: value}), ...]]]
        entries: list[Any] = answer[0][1]
        return entries

    def _batch(self, after: int, entries: list[Any]) -> Batch:
        events = [Event.from_json(fields[b"e"]) for _, fields in entries]
        gap = None
        if events[0].seq > after + 1:
            gap = Gap(after=after, next_seq=events[0].seq)
        last = events[-1]
        self._last_seq = max(self._last_seq, last.seq)
        if last.is_terminal:
            self._closed = True
        return Batch(events, gap, last.is_terminal)

    def statistics(self) -> LogStatistics:
        return LogStatistics(
            first_seq=0,
            last_seq=self._last_seq,
            retained_events=0,
            retained_bytes=0,
            waiting_readers=self._waiting,
            closed=self._closed,
        )


async def close_quietly(redis: StoreClient) -> None:
    with contextlib.suppress(*STORE_ERRORS):
        await redis.aclose()
