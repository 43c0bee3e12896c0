"""OpenAI's Codex CLI (``codex exec``, pinned in tests/clients) works through the Responses
face: a custom model provider whose ``base_url`` is the gateway's ``/v1``, ``wire_api =
"responses"``, answered by our scripted upstream."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings
from tests.conftest import require_binary
from tests.processes import run_to_end
from tests.support import FAST, RunningGateway
from tests.upstream_server import UpstreamServer, chat_tool_reply, route, text_reply

CODEX = Path(__file__).resolve().parents[1] / "clients" / "node_modules" / ".bin" / "codex"
CODEX_TIMEOUT = 60.0  # seconds one `codex exec` may take
API_KEY_VARIABLE = "GATEWAY_TEST_API_KEY"


@dataclass
class Recorded:
    """One HTTP request the gateway received, as its client sent it."""

    method: str
    path: str
    body: bytearray = field(default_factory=bytearray)

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


class Recorder:
    """ASGI middleware that keeps every HTTP request's method, path and body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[Recorded] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = Recorded(scope["method"], scope["path"])
        self.requests.append(record)

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.body += message.get("body", b"")
            return message

        await self.app(scope, recording_receive, send)

    def responses_bodies(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests if r.method == "POST" and r.path == "/v1/responses"]


@contextlib.contextmanager
def recording_gateway(upstream: UpstreamServer) -> Iterator[tuple[RunningGateway, Recorder]]:
    """A gateway whose model ``up`` is ``upstream``, recording the requests it receives."""
    settings = Settings.model_validate({**FAST, "routes": {"up": route(upstream, max_attempts=1)}})
    gateway = RunningGateway(settings)
    recorder = Recorder(cast("ASGIApp", gateway.app))  # the FastAPI app make_server built
    gateway.server.config.app = recorder
    gateway.start()
    try:
        yield gateway, recorder
    finally:
        gateway.stop()


@pytest.fixture
def codex() -> str:
    return require_binary(str(CODEX), "cd tests/clients && npm ci")


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def codex_exec(codex: str, gateway: RunningGateway, prompt: str, tmp: Path) -> Finished:
    """Run ``codex exec`` once, headless, against ``gateway``'s model ``up``."""
    home, work = tmp / "codex-home", tmp / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        f"""\
model = "up"
model_provider = "gateway"
check_for_update_on_startup = false

[model_providers.gateway]
name = "gateway"
base_url = "{gateway.base_url}/v1"
wire_api = "responses"
env_key = "{API_KEY_VARIABLE}"
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false
apps = false
"""
    )
    env = {**os.environ, "CODEX_HOME": str(home), API_KEY_VARIABLE: "test-key", "NO_COLOR": "1"}
    returncode, stdout, stderr = await run_to_end(
        codex,
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--sandbox",
        "read-only",
        "--color",
        "never",
        "--cd",
        str(work),
        prompt,
        env=env,
        timeout=CODEX_TIMEOUT,
    )
    return Finished(returncode, stdout, stderr)


def report(finished: Finished, recorder: Recorder) -> str:
    """What Codex printed and sent, for a failed assertion (pytest shows it)."""
    bodies = "\n".join(json.dumps(body, indent=1) for body in recorder.responses_bodies())
    requests = ", ".join(f"{r.method} {r.path}" for r in recorder.requests)
    return (
        f"exit {finished.returncode}\n--- stdout\n{finished.stdout}\n--- stderr\n"
        f"{finished.stderr[-4000:]}\n--- requests: {requests}\n--- bodies\n{bodies}"
    )


async def test_codex_exec_prints_the_gateway_s_answer(
    codex: str, upstream: UpstreamServer, tmp_path: Path
) -> None:
    upstream.script(text_reply("Answer from ", "the gateway: ", "pelican-42"))
    with recording_gateway(upstream) as (gateway, recorder):
        finished = await codex_exec(codex, gateway, "Say hello", tmp_path)
    assert finished.returncode == 0, report(finished, recorder)
    assert "Answer from the gateway: pelican-42" in finished.stdout, report(finished, recorder)
    assert len(recorder.responses_bodies()) == 1, report(finished, recorder)  # no retry


async def test_a_command_codex_runs_goes_back_as_its_output_and_the_answer_follows(
    codex: str, upstream: UpstreamServer, tmp_path: Path
) -> None:
    command = json.dumps({"cmd": "echo tool-ran-here"})
    upstream.script(
        chat_tool_reply("call_1", "exec_command", command), text_reply("Done: ", "pelican-42")
    )
    with recording_gateway(upstream) as (gateway, recorder):
        finished = await codex_exec(codex, gateway, "Run echo", tmp_path)
    assert finished.returncode == 0, report(finished, recorder)
    assert "Done: pelican-42" in finished.stdout, report(finished, recorder)
    _, second = upstream.wait_for_requests(2)
    (output,) = [m for m in second.body["messages"] if m["role"] == "tool"]
    assert output["tool_call_id"] == "call_1", report(finished, recorder)
    assert "tool-ran-here" in output["content"], report(finished, recorder)
