"""``gateway --workers 2`` as a real process with a real Redis: the two workers share one
port, and a run started on one is resumed and cancelled on the other; SIGTERM drains both and
leaves no process and no listening socket; a worker killed is started again while the other
serves on; and without Redis, more than one worker is refused.

Which worker serves a connection: an httpx client of one connection keeps it alive, and
``/readyz`` on it names the instance (``a-w1``, ``a-w2``: the instance id ``a`` of
``gateway_processes`` with the worker's number).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.gateway_process import GatewayProcess, eventually, gateway_env, gateway_processes
from tests.processes import run_to_end
from tests.support import HEAVY, ws_recv

pytestmark = HEAVY

WORKERS = 2
INSTANCES = ("a-w1", "a-w2")
# Both workers import and start at once on a shared 2-CPU machine: seconds, not one.
WORKER_START_TIMEOUT = 30.0
SSE = {"accept": "text/event-stream"}
SESSIONS_AT_ONCE = 8


def countdown(ticks: int, interval: float) -> dict[str, Any]:
    """A run of one countdown tool (``ticks`` + 4 events), going on without readers."""
    return {
        "parallel": [{"tool": "countdown", "arguments": {"start": ticks, "interval": interval}}],
        "on_disconnect": "continue",
    }


async def start_run(client: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    answer = await client.post("/v1/runs", json=spec)
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


async def events(
    client: httpx.AsyncClient, run_id: str, *, after: int = 0, until: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The run's events after ``after`` (sent as ``Last-Event-ID``), as they arrive."""
    headers = {**SSE, "last-event-id": str(after)} if after else SSE
    async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        buffer = b""
        async for chunk in response.aiter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                for line in raw.decode().split("\n"):
                    if line.startswith("data: "):
                        yield json.loads(line[len("data: ") :])


async def served_by(client: httpx.AsyncClient) -> str:
    answer = await client.get("/readyz")
    assert answer.status_code == 200, answer.text
    instance: str = answer.json()["instance"]
    assert answer.json()["worker"] == int(instance.rsplit("-w", 1)[1])
    return instance


@contextlib.asynccontextmanager
async def one_client_per_worker(
    gateway: GatewayProcess, instances: tuple[str, ...] = INSTANCES
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client on a connection of its own to each of ``instances``: new connections are
    opened until one has landed on each (the kernel gives each to whichever worker accepts
    first), the others closed."""
    found: dict[str, httpx.AsyncClient] = {}
    async with contextlib.AsyncExitStack() as stack:

        async def land() -> bool:
            client = httpx.AsyncClient(
                base_url=gateway.base_url,
                timeout=WORKER_START_TIMEOUT,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            stack.push_async_callback(client.aclose)
            instance = await served_by(client)
            if instance in found or instance not in instances:
                await client.aclose()  # its connection goes back to the accept queue's pick
            else:
                found[instance] = client
            return len(found) == len(instances)

        await eventually(land, timeout=WORKER_START_TIMEOUT, interval=0.01, what="a worker each")
        yield found


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process (a zombie counts: it was not reaped)."""
    return Path(f"/proc/{pid}").exists()


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def worker_pids(gateway: GatewayProcess) -> dict[int, int]:
    """Worker number → pid, as the supervisor's log said it started them (the latest)."""
    pids: dict[int, int] = {}
    for line in gateway.log:
        record = json.loads(line) if line.startswith("{") else {}
        event = str(record.get("event", ""))
        if record.get("logger") == "gateway.supervisor" and " started (pid " in event:
            index, pid = event.removeprefix("worker ").split(" started (pid ")
            pids[int(index)] = int(pid.rstrip(")"))
    return pids


async def test_a_run_started_on_one_worker_is_resumed_and_cancelled_on_the_other(
    redis_url: str,
) -> None:
    async with gateway_processes(1, redis_url=redis_url, workers=WORKERS) as (gateway,):
        async with (
            one_client_per_worker(gateway) as clients,
            one_client_per_worker(gateway, ("a-w2",)) as second,
        ):
            on_1, on_2 = clients["a-w1"], clients["a-w2"]
            run_id = await start_run(on_1, countdown(500, 0.01))
            resumed = []
            # Resumed after seq 2 on the other worker, and cancelled there (on a connection
            # of its own), mid-run.
            async for event in events(on_2, run_id, after=2):
                resumed.append(event)
                if event["seq"] == 6:
                    answer = await second["a-w2"].post(f"/v1/runs/{run_id}/cancel")
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["status"] == "cancelled"
            # Every connection stayed where it landed: the other worker answered all along.
            assert await served_by(on_1) == "a-w1"
            assert await served_by(on_2) == "a-w2"
            scrapes = [(await client.get("/metrics")).text for client in (on_1, on_2)]
            on_owner = [event async for event in events(on_1, run_id)]
    seqs = [event["seq"] for event in resumed]
    assert seqs == list(range(3, seqs[-1] + 1))
    assert resumed[-1]["type"] == "run.cancelled"
    assert on_owner[-1] == resumed[-1]
    # Each worker's scrape says which worker answered.
    for index, scrape in enumerate(scrapes, start=1):
        assert f'gateway_worker_info{{instance="a-w{index}",worker="{index}"}} 1.0' in scrape


def ws_sessions(gateway: GatewayProcess) -> list[int]:
    """The worker of each WebSocket session the gateway has logged (at its end), in order."""
    found = []
    for line in gateway.log:
        if line.startswith("{") and '"path":"/v1/ws"' in line:
            found.append(int(json.loads(line)["worker"]))
    return found


async def test_a_websocket_on_the_other_worker_subscribes_to_a_running_run(
    redis_url: str,
) -> None:
    async with gateway_processes(1, redis_url=redis_url, workers=WORKERS) as (gateway,):
        # Both workers serving first: a worker still starting takes connections it answers
        # only once it is up.
        async with one_client_per_worker(gateway) as clients:
            run_id = await start_run(clients["a-w1"], countdown(4000, 0.005))
            # Sessions until one has been served by worker 2 (the kernel picks; sessions
            # opened at once spread better than one after another): each subscribes from
            # the start and reads a few of the run's events.
            received: list[list[int]] = []

            async def session() -> None:
                # max_queue=None: a client that stops reading must still read the close
                # (websockets pauses reading once its queue is full, close frame and all).
                async with websockets.connect(gateway.ws_url, max_queue=None) as ws:
                    await ws.send(json.dumps({"type": "subscribe", "id": 1, "run_id": run_id}))
                    seqs: list[int] = []
                    while len(seqs) < 5:
                        message = await ws_recv(ws)
                        if "seq" in message:
                            seqs.append(message["seq"])
                received.append(seqs)

            async def on_worker_2() -> bool:
                async with asyncio.TaskGroup() as sessions:
                    for _ in range(SESSIONS_AT_ONCE):
                        sessions.create_task(session())

                async def logged() -> list[int]:
                    workers = ws_sessions(gateway)
                    return workers if len(workers) == len(received) else []

                return 2 in await eventually(logged, timeout=5, what="the sessions logged")

            await eventually(on_worker_2, timeout=20, interval=0, what="a session on worker 2")
            answer = await clients["a-w1"].post(f"/v1/runs/{run_id}/cancel")
            assert answer.status_code == 200, answer.text
    assert all(seqs == list(range(1, 6)) for seqs in received), received


async def test_sigterm_drains_every_worker_and_leaves_no_process_or_socket(
    redis_url: str,
) -> None:
    async with gateway_processes(1, redis_url=redis_url, workers=WORKERS) as (gateway,):
        assert gateway.process is not None
        supervisor = gateway.process.pid
        async with one_client_per_worker(gateway) as clients:
            # A run in flight on each worker: the drain ends each with run.cancelled.
            runs = {name: await start_run(c, countdown(5000, 0.01)) for name, c in clients.items()}
            spawned = children(supervisor)  # the workers (and multiprocessing's tracker)
            assert set(worker_pids(gateway).values()) <= spawned
            os.kill(supervisor, signal.SIGTERM)
            ends = {}
            for name, client in clients.items():
                async for event in events(client, runs[name]):
                    ends[name] = event
        assert await gateway.wait(timeout=15) == 0
        assert accepts(gateway.port) is False

        async def none_left() -> bool:
            # multiprocessing's resource tracker ends on its own once the supervisor is gone.
            return not [pid for pid in spawned if alive(pid)]

        await eventually(none_left, timeout=5, what="no process of the gateway's left")
    assert {name: event["type"] for name, event in ends.items()} == dict.fromkeys(
        INSTANCES, "run.cancelled"
    )
    assert {event["reason"] for event in ends.values()} == {"shutdown"}
    lines = "\n".join(gateway.log)
    assert "SIGTERM: draining 2 worker(s)" in lines
    for index in (1, 2):
        assert f"worker {index} (pid {worker_pids(gateway)[index]}) exited" in lines


async def test_a_killed_worker_is_started_again_while_the_other_serves_on(
    redis_url: str,
) -> None:
    async with gateway_processes(1, redis_url=redis_url, workers=WORKERS) as (gateway,):
        async with one_client_per_worker(gateway) as clients:
            killed = worker_pids(gateway)[1]
            os.kill(killed, signal.SIGKILL)

            async def restarted() -> bool:
                return worker_pids(gateway)[1] != killed

            await eventually(restarted, timeout=10, what="worker 1 started again")
            # The other worker's connection was never touched.
            assert await served_by(clients["a-w2"]) == "a-w2"
        # A new connection lands on the new worker 1 (same instance id) in time.
        async with one_client_per_worker(gateway, ("a-w1",)) as again:
            run_id = await start_run(again["a-w1"], countdown(2, 0.01))
            ended = [event async for event in events(again["a-w1"], run_id)]
    assert ended[-1]["type"] == "run.completed"
    assert not alive(killed)
    assert f"worker 1 (pid {killed}) exited unexpectedly (signal SIGKILL)" in "\n".join(gateway.log)


async def test_workers_without_a_shared_store_are_refused() -> None:
    # The same check under --check-config: tests/unit/gateway/test_cli.py.
    env = gateway_env("a", None, {"workers": WORKERS})
    status, _, stderr = await run_to_end(sys.executable, "-m", "gateway", env=env, timeout=30)
    assert status == 2
    assert (
        "gateway: --workers 2 needs a shared store: set GATEWAY_REDIS_URL (or redis_url); "
        "without it each worker would keep its own runs"
    ) in stderr


async def test_workers_whose_supervisor_is_killed_drain_and_exit(redis_url: str) -> None:
    async with gateway_processes(1, redis_url=redis_url, workers=WORKERS) as (gateway,):
        assert gateway.process is not None
        async with one_client_per_worker(gateway):
            spawned = children(gateway.process.pid)
        gateway.kill()  # SIGKILL: the supervisor cannot tell its workers anything

        async def none_left() -> bool:
            return not [pid for pid in spawned if alive(pid)] and not accepts(gateway.port)

        await eventually(none_left, timeout=10, what="the orphaned workers gone")
    assert "\n".join(gateway.log).count("the supervisor is gone: draining") == WORKERS
