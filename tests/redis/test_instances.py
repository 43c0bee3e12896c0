"""Two real gateway processes (``python -m gateway``) sharing one real Redis (and, for the
tests taking ``any_redis_url``, a three-master Redis Cluster too): a run started on
one instance is read, resumed, inspected and cancelled on the other; an instance killed
mid-run has its runs failed by the other; no stream slot leaks across instances; and both
instances go unavailable with Redis and come back with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio
import websockets

from tests.gateway_process import GatewayProcess, api_keys, eventually, gateway_processes
from tests.redis_server import RedisServer
from tests.upstream_server import UpstreamServer, ask, route, text_reply

LEASE_TTL = 1.5
SSE = {"accept": "text/event-stream"}
TERMINAL = ("run.completed", "run.failed", "run.cancelled")


# -- runs and their events -----------------------------------------------------------------


def countdown(ticks: int, interval: float, **extra: Any) -> dict[str, Any]:
    """A run of one countdown tool: ``ticks`` + 4 events, ``interval`` seconds apart. It
    goes on when its readers leave (unless ``extra`` says otherwise)."""
    return {
        "parallel": [{"tool": "countdown", "arguments": {"start": ticks, "interval": interval}}],
        "on_disconnect": "continue",
        **extra,
    }


async def start(client: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    answer = await client.post("/v1/runs", json=spec)
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


@dataclass
class Frame:
    event: str | None  # the ``event:`` field (``error`` for a stream.error), else None
    id: int | None
    data: dict[str, Any]


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """The data frames of an SSE response as they arrive (comments skipped); an event's
    ``id:`` is checked against its seq."""
    buffer = b""
    async for chunk in response.aiter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in raw.decode().split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                assert name in ("id", "event", "data"), f"unexpected SSE line {line!r}"
                fields[name] = value
            if "data" not in fields:
                continue
            frame = Frame(
                fields.get("event"),
                int(fields["id"]) if "id" in fields else None,
                json.loads(fields["data"]),
            )
            if frame.id is not None:
                assert frame.id == frame.data["seq"]
            yield frame
    assert buffer == b"", f"the stream ended inside a frame: {buffer!r}"


@dataclass
class Reader:
    """A client following a run's events over SSE in a task of its own, noting when each
    event arrived; ``error`` is the ``stream.error`` the stream may end with."""

    client: httpx.AsyncClient
    run_id: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    error: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None

    def start(self) -> Reader:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        url = f"/v1/runs/{self.run_id}/events"
        async with self.client.stream(
            "GET", url, headers=self.headers, params=self.params
        ) as response:
            self.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                return
            async for frame in frames(response):
                if frame.event == "error":
                    self.error = frame.data
                    continue
                self.events.append(frame.data)
                self.arrived.append(time.monotonic())

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    async def seen(self, seq: int, timeout: float = 10) -> None:
        """Wait until the reader has the event ``seq``."""

        async def check() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # raises what the reader raised
                assert self.last_seq >= seq, f"the stream ended at seq {self.last_seq}"
            return self.last_seq >= seq

        await eventually(check, timeout=timeout, interval=0.01, what=f"seq {seq} read")

    async def finished(self, timeout: float = 10) -> Reader:
        """Wait until the stream has ended."""
        assert self.task is not None
        async with asyncio.timeout(timeout):
            await self.task
        return self


async def read_events(
    client: httpx.AsyncClient,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    until_seq: int | None = None,
    timeout: float = 10,
) -> list[dict[str, Any]]:
    """The run's events from ``GET /v1/runs/{id}/events`` up to its end, or (stopping there
    and closing the stream) up to the first event whose seq is ``until_seq`` or more."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async with client.stream(
            "GET", f"/v1/runs/{run_id}/events", headers=headers or {}, params=params or {}
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for frame in frames(response):
                assert frame.event is None, frame.data
                events.append(frame.data)
                if until_seq is not None and frame.data["seq"] >= until_seq:
                    break
    return events


async def snapshot(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    answer = await client.get(f"/v1/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()
    return value


async def status_is(client: httpx.AsyncClient, run_id: str, status: str) -> dict[str, Any] | None:
    found = await snapshot(client, run_id)
    return found if found["status"] == status else None


def contiguous(events: list[dict[str, Any]], first: int) -> bool:
    return [e["seq"] for e in events] == list(range(first, first + len(events)))


# -- 1. resume elsewhere -------------------------------------------------------------------


async def test_a_run_read_in_part_on_one_instance_resumes_on_another_with_exactly_the_rest(
    any_redis_url: str,
) -> None:
    async with gateway_processes(2, redis_url=any_redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            run_id = await start(on_a, countdown(80, 0.02))
            first = await read_events(on_a, run_id, until_seq=10)
            last = first[-1]["seq"]
            assert (await snapshot(on_b, run_id))["status"] == "running"  # the rest is to come
            rest = await read_events(on_b, run_id, headers={"last-event-id": str(last)})
            full = await read_events(on_a, run_id, params={"after": 0})
    assert contiguous(first, 1)
    assert contiguous(rest, last + 1)
    assert rest[-1]["type"] == "run.completed"
    assert not any(e["type"] in TERMINAL for e in rest[:-1])
    assert first + rest == full


async def test_a_resume_at_the_end_of_another_instance_s_finished_run_is_a_204(
    redis_url: str,
) -> None:
    """EventSource reconnects after the end with Last-Event-ID = the terminal seq; on an
    instance that did not run the run, too, the answer ends it (204) instead of a stream
    that waits for events that never come."""
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            run_id = await start(on_a, countdown(3, 0.01))
            full = await read_events(on_a, run_id)
            terminal = full[-1]["seq"]
            async with asyncio.timeout(10):
                at_end = await on_b.get(
                    f"/v1/runs/{run_id}/events", headers={"last-event-id": str(terminal)}
                )
                past_end = await on_b.get(f"/v1/runs/{run_id}/events?after={terminal + 1}")
                agui_end = await on_b.get(
                    f"/v1/runs/{run_id}/events?format=ag-ui",
                    headers={"last-event-id": str(terminal)},
                )
            rest = await read_events(on_b, run_id, headers={"last-event-id": str(terminal - 1)})
    assert full[-1]["type"] == "run.completed"
    for answer in (at_end, past_end, agui_end):
        assert answer.status_code == 204
        assert answer.content == b""
    assert rest == full[-1:]


# -- 2. snapshots anywhere -----------------------------------------------------------------


async def test_a_run_on_one_instance_is_seen_on_the_other_while_it_runs_and_once_it_ended(
    redis_url: str,
) -> None:
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            run_id = await start(on_a, countdown(80, 0.02))

            async def running_with_events() -> dict[str, Any] | None:
                found = await snapshot(on_b, run_id)
                return found if found["status"] == "running" and found["last_seq"] >= 3 else None

            early = await eventually(running_with_events, timeout=5, what="running on B")
            later = await eventually(
                running_with_events, timeout=5, what="still running on B"
            )  # a second look, a little later
            ended = await eventually(
                lambda: status_is(on_b, run_id, "completed"), timeout=10, what="completed on B"
            )
            on_owner = await snapshot(on_a, run_id)
            log = await read_events(on_b, run_id)
    assert early["run_id"] == run_id
    assert early["kind"] == "parallel"
    assert early["on_disconnect"] == "continue"
    assert early["ended_at"] is None
    assert early["last_seq"] <= later["last_seq"] < ended["last_seq"]
    assert ended["last_seq"] == log[-1]["seq"] == on_owner["last_seq"]
    assert log[-1]["type"] == "run.completed"
    for name in ("status", "created_at", "started_at", "ended_at", "output", "error", "usage"):
        assert ended[name] == on_owner[name], name
    assert [p["status"] for p in ended["producers"]] == ["completed"]


# -- 3. cancel anywhere --------------------------------------------------------------------


async def test_a_cancel_on_another_instance_stops_the_run_and_closes_its_upstream_request(
    any_redis_url: str, upstream: UpstreamServer
) -> None:
    upstream.script(text_reply(*(["tok "] * 400), pause=0.02))  # about 8 s of tokens
    async with gateway_processes(
        2, redis_url=any_redis_url, lease_ttl=LEASE_TTL, routes={"up": route(upstream)}
    ) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            run_id = await start(on_a, ask())  # a JSON start: the run goes on without readers
            (record,) = await asyncio.to_thread(upstream.wait_for_requests, 1)
            reader = Reader(on_a, run_id).start()

            async def streaming() -> bool:
                return any(e["type"] == "message.delta" for e in reader.events)

            await eventually(streaming, timeout=5, what="model text on A")
            cancelled_at = time.monotonic()
            answer = await on_b.post(f"/v1/runs/{run_id}/cancel")
            disconnected_at = await upstream.wait_disconnect(record)
            await reader.finished()
            on_owner = await snapshot(on_a, run_id)
            on_b_after = await snapshot(on_b, run_id)
            forwarded = (await on_b.get("/readyz")).json()["cancels_forwarded"]
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert disconnected_at - cancelled_at < 1.0
    assert reader.events[-1] == {
        **reader.events[-1],
        "type": "run.cancelled",
        "reason": "cancelled by client",
    }
    assert contiguous(reader.events, 1)
    assert on_owner["status"] == "cancelled"
    assert on_owner["cancel_reason"] == "cancelled by client"
    assert on_owner["producers"]
    assert {p["status"] for p in on_owner["producers"]} == {"cancelled"}
    assert on_b_after["status"] == "cancelled"
    assert forwarded == 1


async def subscribers(store: redis.asyncio.Redis, channel: str) -> int:
    """How many listen on ``channel`` (plain or sharded pub/sub)."""
    plain = await store.pubsub_numsub(channel)
    sharded = await store.pubsub_shardnumsub(channel)
    return int(plain[0][1]) + int(sharded[0][1])


async def test_a_cancel_whose_control_message_is_lost_still_stops_the_run(
    redis_url: str,
) -> None:
    """Pub/sub delivers to whoever listens at that moment: a cancel published while the
    running instance's subscription is down is gone. The cancel is also recorded with the
    instance, which takes it when it subscribes again or renews its lease.

    Instance A signs in as a Redis user of its own, whose channels the test takes away:
    Redis then drops A's subscription (and ``CLIENT KILL TYPE pubsub`` makes sure), and A
    cannot subscribe again, so B's cancel message reaches nobody."""
    store = redis.asyncio.from_url(redis_url)
    user = f"gw-a-{random.getrandbits(32):08x}"
    await store.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    user_url = redis_url.replace("redis://", f"redis://{user}:secret@", 1)
    try:
        async with (
            gateway_processes(1, redis_url=user_url, names=("a",), lease_ttl=LEASE_TTL) as (a,),
            gateway_processes(1, redis_url=redis_url, names=("b",), lease_ttl=LEASE_TTL) as (b,),
        ):
            async with a.client() as on_a, b.client() as on_b:
                run_id = await start(on_a, countdown(1000, 0.02))  # 20 s unless cancelled
                reader = Reader(on_a, run_id).start()
                await reader.seen(3)
                await store.acl_setuser(user, enabled=True, reset_channels=True)
                await store.client_kill_filter(_type="pubsub", username=user)
                assert await subscribers(store, "gw:control:{a}") == 0
                cancelled_at = time.monotonic()
                answer = await on_b.post(f"/v1/runs/{run_id}/cancel")
                await reader.finished(timeout=LEASE_TTL * 2)
                recovered = (await on_a.get("/readyz")).json()["cancels_recovered"]
                left = await store.hlen("gw:instance:{a}:cancels")
    finally:
        await store.acl_deluser(user)
        await store.aclose()
    assert answer.status_code == 200, answer.text
    assert reader.events[-1]["type"] == "run.cancelled"
    assert reader.events[-1]["reason"] == "cancelled by client"
    assert reader.arrived[-1] - cancelled_at < LEASE_TTL  # a renewal every LEASE_TTL / 4
    assert contiguous(reader.events, 1)
    assert recovered == 1
    assert left == 0  # taken, not left for later


# -- 4. an instance dies -------------------------------------------------------------------


async def test_a_killed_instance_s_run_fails_as_instance_lost_for_its_reader_on_another(
    any_redis_url: str,
) -> None:
    async with gateway_processes(2, redis_url=any_redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            run_id = await start(on_a, countdown(1000, 0.02))
            reader = Reader(on_b, run_id).start()
            await reader.seen(5)
            a.kill()
            killed_at = time.monotonic()
            await reader.finished(timeout=LEASE_TTL * 3 + 5)
            after = await snapshot(on_b, run_id)
            lost = (await on_b.get("/readyz")).json()["lost_runs_failed"]
    assert reader.status == 200
    assert reader.error is None
    failed = reader.events[-1]
    assert failed["type"] == "run.failed"
    assert failed["error"]["code"] == "instance_lost"
    assert contiguous(reader.events, 1)
    assert reader.arrived[-1] - killed_at < LEASE_TTL * 1.5 + 1
    assert after["status"] == "failed"
    assert after["error"]["code"] == "instance_lost"
    assert after["last_seq"] == failed["seq"]
    assert lost == 1


# -- 5. ownership --------------------------------------------------------------------------


async def test_a_run_is_its_key_s_on_every_instance_and_not_found_for_another_key(
    redis_url: str,
) -> None:
    keys = api_keys("k1", "k2")
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=LEASE_TTL, api_keys=keys) as (
        a,
        b,
    ):
        async with a.client("k1") as k1_a, b.client("k1") as k1_b:
            run_id = await start(k1_a, countdown(1000, 0.02))
            for gateway in (a, b):
                async with gateway.client("k2") as k2:
                    answers = [
                        await k2.get(f"/v1/runs/{run_id}"),
                        await k2.get(f"/v1/runs/{run_id}/events"),
                        await k2.post(f"/v1/runs/{run_id}/cancel"),
                    ]
                for answer in answers:
                    assert answer.status_code == 404, (gateway.name, answer.request.url)
                    assert answer.json()["error"]["code"] == "not_found"
            seen = await snapshot(k1_b, run_id)
            events = await read_events(k1_b, run_id, until_seq=3)
            still = await snapshot(k1_a, run_id)  # k2's cancels did nothing
            cancelled = await k1_b.post(f"/v1/runs/{run_id}/cancel")
    assert seen["run_id"] == run_id
    assert seen["owner"] == "k1"
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert still["status"] == "running"
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


# -- 6. cancelling what has ended ----------------------------------------------------------


async def test_cancelling_an_ended_run_on_another_instance_is_a_409_as_on_its_own(
    redis_url: str,
) -> None:
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=LEASE_TTL) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            run_id = await start(on_a, countdown(3, 0.01))
            events = await read_events(on_a, run_id)
            on_owner = await on_a.post(f"/v1/runs/{run_id}/cancel")
            elsewhere = await on_b.post(f"/v1/runs/{run_id}/cancel")
            after = await snapshot(on_b, run_id)
    assert events[-1]["type"] == "run.completed"
    assert on_owner.status_code == 409
    assert elsewhere.status_code == 409
    assert on_owner.json()["error"]["code"] == elsewhere.json()["error"]["code"] == "run_finished"
    assert after["status"] == "completed"


# -- 7. stream slots -----------------------------------------------------------------------

MAX_STREAMS = 5
SLOT_RELEASE_TIMEOUT = 5.0


@dataclass
class Outcome:
    kind: str
    opened: bool = False
    refused: str | None = None  # the error code of a refusal


async def sse_attempt(
    gateway: GatewayProcess, key: str, kind: str, shared_run: str, rng: random.Random
) -> Outcome:
    """Open an SSE stream (a new run's, or the shared run's) and drop it at a random point:
    after a few events, or wherever a random deadline cuts it."""
    outcome = Outcome(kind)
    keep = rng.randint(0, 15)
    cut = rng.uniform(0.0, 0.3) if kind.endswith("cut") else 5.0
    if kind.startswith("sse-post"):
        method, url, body = "POST", "/v1/runs", countdown(300, 0.01, on_disconnect="cancel")
    else:
        method, url, body = "GET", f"/v1/runs/{shared_run}/events", None
    async with gateway.client(key) as client:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cut):
                async with client.stream(method, url, json=body, headers=SSE) as response:
                    if response.status_code != 200:
                        outcome.refused = json.loads(await response.aread())["error"]["code"]
                        return outcome
                    outcome.opened = True
                    seen = 0
                    async for _ in frames(response):
                        seen += 1
                        if seen > keep:
                            break
    return outcome


async def ws_attempt(
    gateway: GatewayProcess, key: str, kind: str, shared_run: str, rng: random.Random
) -> Outcome:
    """Open a WebSocket session (it holds a stream slot), start or subscribe to a run, and
    drop the connection (no close handshake) at a random point, or close it properly."""
    outcome = Outcome(kind)
    ws = await websockets.connect(
        gateway.ws_url, additional_headers={"authorization": f"Bearer {key}"}, open_timeout=5
    )
    try:
        if kind == "ws-start":
            command = {"type": "run.start", "id": 1, "run": countdown(300, 0.01)}
            command["run"].pop("on_disconnect")
        elif kind == "ws-subscribe":
            command = {"type": "subscribe", "id": 1, "run_id": shared_run, "after": 0}
        else:
            command = {"type": "ping", "id": 1}
        await ws.send(json.dumps(command))
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if first["type"] == "error" and first.get("id") is None:
            outcome.refused = first["code"]  # refused on connect (the slot)
            return outcome
        assert first["type"] == "ack", first
        outcome.opened = True
        for _ in range(rng.randint(0, 15) if kind != "ws-close" else 0):
            await asyncio.wait_for(ws.recv(), 5)
        if kind == "ws-close":
            await ws.close()
        else:
            ws.transport.abort()  # dropped: no close frame
    except websockets.ConnectionClosed:
        pass
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await ws.close()
    return outcome


async def held_slots(store: redis.asyncio.Redis, key: str) -> int:
    """Every member of the key's stream-slot set, expired or not."""
    return int(await store.zcard(f"gw:quota:{{{key}}}:streams"))


async def slots_released(store: redis.asyncio.Redis, key: str, when: str) -> None:
    """Wait until no slot of ``key`` is held; else fail naming the slots still there (their
    ids start with the instance that took them)."""

    async def released() -> bool:
        return await held_slots(store, key) == 0

    try:
        await eventually(released, timeout=SLOT_RELEASE_TIMEOUT, what="the slots released")
    except AssertionError:
        left = await store.zrange(f"gw:quota:{{{key}}}:streams", 0, -1)
        raise AssertionError(
            f"{len(left)} stream slot(s) of {key!r} still held {SLOT_RELEASE_TIMEOUT:g}s "
            f"{when}, with no client connected: {[m.decode() for m in left]}"
        ) from None


async def test_streams_dropped_anywhere_on_both_instances_give_every_stream_slot_back(
    redis_url: str,
) -> None:
    rng = random.Random(7)
    # A lease (and so a slot lifetime) far longer than the waits below: a slot that was not
    # given back cannot pass for released by running out meanwhile.
    settings = {
        "lease_ttl": 30,
        "api_keys": api_keys("k1"),
        "max_streams_per_key": MAX_STREAMS,
        "runs_per_key_per_minute": 100_000,
    }
    store = redis.asyncio.from_url(redis_url)
    try:
        async with gateway_processes(2, redis_url=redis_url, **settings) as gateways:
            a, b = gateways
            async with a.client("k1") as on_a:
                shared_run = await start(on_a, countdown(3000, 0.01))
                kinds = [
                    "sse-post",
                    "sse-post-cut",
                    "sse-follow",
                    "sse-follow-cut",
                    "ws-start",
                    "ws-subscribe",
                    "ws-close",
                ]
                attempts = [(rng.choice(kinds), rng.choice(gateways)) for _ in range(100)]
                limit = asyncio.Semaphore(8)

                async def attempt(kind: str, gateway: GatewayProcess) -> Outcome:
                    async with limit:
                        await asyncio.sleep(rng.uniform(0, 0.02))
                        if kind.startswith("ws"):
                            return await ws_attempt(gateway, "k1", kind, shared_run, rng)
                        return await sse_attempt(gateway, "k1", kind, shared_run, rng)

                outcomes = await asyncio.gather(*(attempt(k, g) for k, g in attempts))
                await slots_released(store, "k1", "once every stream above was dropped")
                # The limit holds across both instances: five streams at once, not six.
                async with contextlib.AsyncExitStack() as streams:
                    opened = []
                    for gateway in (a, b, a, b, a):
                        client = await streams.enter_async_context(gateway.client("k1"))
                        response = await streams.enter_async_context(
                            client.stream("GET", f"/v1/runs/{shared_run}/events", headers=SSE)
                        )
                        opened.append(response.status_code)
                    assert await held_slots(store, "k1") == MAX_STREAMS
                    on_b = await streams.enter_async_context(b.client("k1"))
                    sixth = [
                        await client.get(f"/v1/runs/{shared_run}/events", headers=SSE)
                        for client in (on_a, on_b)
                    ]
                await slots_released(store, "k1", "once the five streams were closed")
                await on_a.post(f"/v1/runs/{shared_run}/cancel")
    finally:
        await store.aclose()
    assert sum(o.opened for o in outcomes) >= 30, outcomes
    assert {o.refused for o in outcomes} <= {None, "limit_exceeded"}  # never the run rate
    assert opened == [200] * MAX_STREAMS
    for answer in sixth:
        assert answer.status_code == 429
        assert answer.json()["error"]["code"] == "limit_exceeded"


# -- 8. Redis goes away and comes back -----------------------------------------------------


async def test_readers_on_another_instance_that_hang_up_give_their_stream_slots_back(
    redis_url: str,
) -> None:
    """A reader of a remote run waits in a blocking XREAD; redis-py may swallow the cancel
    of its client leaving (Python 3.11's wait_for). The stream must end all the same."""
    store = redis.asyncio.from_url(redis_url)
    settings = {"lease_ttl": 30, "api_keys": api_keys("k1"), "max_streams_per_key": 100}
    try:
        async with gateway_processes(2, redis_url=redis_url, **settings) as (a, b):
            async with a.client("k1") as on_a, b.client("k1") as on_b:
                run_id = await start(on_a, countdown(3000, 0.01))

                async def hang_ups(count: int) -> None:
                    for _ in range(count):  # read one event of A's run on B, then hang up
                        async with on_b.stream(
                            "GET", f"/v1/runs/{run_id}/events", headers=SSE
                        ) as sse:
                            async for _ in frames(sse):
                                break

                await asyncio.gather(*(hang_ups(25) for _ in range(8)))
                await slots_released(store, "k1", "after 200 readers on B hung up")
    finally:
        await store.aclose()


async def ready(client: httpx.AsyncClient) -> tuple[int, str]:
    answer = await client.get("/readyz")
    return answer.status_code, answer.json()["status"]


async def test_both_instances_go_unavailable_with_redis_and_serve_again_once_it_is_back(
    own_redis: RedisServer,
) -> None:
    grace = 0.5
    async with gateway_processes(
        2,
        redis_url=own_redis.url,
        lease_ttl=LEASE_TTL,
        redis_outage_grace=grace,
        redis_timeout=0.5,
    ) as (a, b):
        async with a.client() as on_a, b.client() as on_b:
            for client in (on_a, on_b):
                assert await ready(client) == (200, "ready")
            run_id = await start(on_a, countdown(1000, 0.02))
            on_owner = Reader(on_a, run_id).start()
            elsewhere = Reader(on_b, run_id).start()
            await on_owner.seen(5)
            await elsewhere.seen(5)

            await asyncio.to_thread(own_redis.stop)
            stopped_at = time.monotonic()

            async def both_unavailable() -> bool:
                states = [await ready(client) for client in (on_a, on_b)]
                return states == [(503, "store_unavailable")] * 2

            await eventually(both_unavailable, timeout=grace + 3, what="/readyz 503 on A and B")
            unavailable_after = time.monotonic() - stopped_at
            await on_owner.finished()
            await elsewhere.finished()
            refused = [
                await client.post("/v1/runs", json=countdown(3, 0.01)) for client in (on_a, on_b)
            ]

            await asyncio.to_thread(own_redis.start)

            async def both_ready() -> bool:
                return [await ready(client) for client in (on_a, on_b)] == [(200, "ready")] * 2

            await eventually(both_ready, timeout=10, what="/readyz 200 on A and B")
            again = await start(on_a, countdown(20, 0.01))
            log = await read_events(on_b, again)
    assert unavailable_after < grace + 1.5
    failed = on_owner.events[-1]
    assert failed["type"] == "run.failed"
    assert failed["error"]["code"] == "store_unavailable"
    assert on_owner.error is None
    assert contiguous(on_owner.events, 1)
    assert not any(e["type"] in TERMINAL for e in elsewhere.events)
    assert contiguous(elsewhere.events, 1)
    assert elsewhere.error is not None
    assert elsewhere.error["type"] == "stream.error"
    assert elsewhere.error["code"] == "store_unavailable"
    for answer in refused:
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "store_unavailable"
    assert contiguous(log, 1)
    assert log[-1]["type"] == "run.completed"
    assert len(log) == 20 + 4


async def test_an_instance_restarted_under_the_same_id_ends_the_runs_it_left_behind(
    redis_url: str,
) -> None:
    """Its lease is alive again at once, so no other instance would ever end them."""
    async with gateway_processes(2, redis_url=redis_url, lease_ttl=30) as (a, b):
        async with a.client() as on_a:
            run_id = await start(on_a, countdown(1000, 0.02))
        async with b.client() as on_b:
            reader = Reader(on_b, run_id).start()
            await reader.seen(5)
            a.kill()
            await a.wait()
            await a.start()  # the same instance id, long before its old lease would expire
            await reader.finished(timeout=10)
            after = await snapshot(on_b, run_id)
    failed = reader.events[-1]
    assert failed["type"] == "run.failed"
    assert failed["error"]["code"] == "instance_lost"
    assert "restarted" in failed["error"]["message"]
    assert contiguous(reader.events, 1)
    assert after["status"] == "failed"
