"""Anthropic's Claude Code (``claude -p``, pinned in tests/clients) works headless through
the Messages face: ``ANTHROPIC_BASE_URL`` is the gateway, and the model it asks for is one of
the gateway's (the demo, or a route onto our scripted OpenAI-compatible upstream).

Claude Code calls only ``POST /v1/messages?beta=true`` here: with
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` it makes no telemetry, update or feature-flag
request (without it, it tries ``api.anthropic.com``). That nothing leaves 127.0.0.1 is
checked, not assumed: every proxy variable points at a sentinel that records any connection,
and only 127.0.0.1 is exempt from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_binary
from tests.processes import run_to_end
from tests.support import running_gateway
from tests.upstream_server import UpstreamServer, chat_tool_reply, route, text_reply

CLAUDE = Path(__file__).resolve().parents[1] / "clients" / "node_modules" / ".bin" / "claude"
CLAUDE_TIMEOUT = 60.0  # seconds one `claude -p` may take
DEMO_ANSWER = "I am the demo model, a script rather than an LLM."


@pytest.fixture
def claude() -> str:
    return require_binary(str(CLAUDE), "cd tests/clients && npm ci")


class Sentinel:
    """A listener on 127.0.0.1 standing in for an HTTP proxy: it keeps the first line of
    every connection (``CONNECT api.anthropic.com:443 …``) and closes it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
            self.seen.append(line[:200].decode("latin-1").strip())
        except (TimeoutError, ConnectionError):
            self.seen.append("(a connection that sent no request line)")
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[Sentinel]:
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            yield self


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    outside: list[str]  # what went to the sentinel: requests for anywhere but 127.0.0.1

    def result(self) -> dict[str, Any]:
        """The JSON object ``--output-format json`` prints last."""
        value: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return value

    def report(self) -> str:
        """What Claude Code printed, for a failed assertion (pytest shows it)."""
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n"
            f"{self.stderr[-4000:]}\n--- outside 127.0.0.1: {self.outside}"
        )


def claude_environment(base_url: str, home: Path, proxy: str) -> dict[str, str]:
    """A clean environment (none of the caller's ANTHROPIC_* or config) for a headless run."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # ~/.claude.json and ~/.claude/ are written here
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test-key",  # sent as x-api-key; without one it is "Not logged in"
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",  # a failure shows at once, not after its backoff
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "NO_COLOR": "1",
    }


async def claude_print(
    claude: str, base_url: str, model: str, prompt: str, tmp: Path, *options: str
) -> Finished:
    """Run ``claude -p`` once, headless, against the gateway at ``base_url``; ``options``
    are more of its flags (default: one turn)."""
    home, work = tmp / "claude-home", tmp / "work"
    home.mkdir()
    work.mkdir()
    async with Sentinel().listening() as sentinel:
        returncode, stdout, stderr = await run_to_end(
            claude,
            "-p",
            prompt,
            "--model",
            model,
            "--output-format",
            "json",
            "--strict-mcp-config",
            *(options or ("--max-turns", "1")),
            cwd=work,
            env=claude_environment(base_url, home, sentinel.url),
            timeout=CLAUDE_TIMEOUT,
        )
    return Finished(returncode, stdout, stderr, sentinel.seen)


async def runs_finished(base_url: str) -> dict[str, float]:
    """``gateway_runs_finished_total`` by status, from the gateway's /metrics."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "gateway_runs_finished_total"
    }


async def test_claude_code_prints_the_demo_model_s_answer(claude: str, tmp_path: Path) -> None:
    with running_gateway() as gateway:
        finished = await claude_print(claude, gateway.base_url, "demo", "Say hello", tmp_path)
        finished_runs = await runs_finished(gateway.base_url)
    assert finished.returncode == 0, finished.report()
    result = finished.result()
    assert result["is_error"] is False, finished.report()
    assert DEMO_ANSWER in result["result"], finished.report()
    assert finished_runs.get("completed") == 1, finished_runs  # one run, through the gateway
    assert finished.outside == [], finished.report()


async def test_claude_code_through_the_gateway_onto_an_openai_compatible_upstream(
    claude: str, upstream: UpstreamServer, tmp_path: Path
) -> None:
    upstream.script(text_reply("Answer from ", "the upstream: ", "pelican-42"))
    with running_gateway(routes={"up": route(upstream, max_attempts=1)}) as gateway:
        finished = await claude_print(claude, gateway.base_url, "up", "Say hello", tmp_path)
    assert finished.returncode == 0, finished.report()
    assert finished.result()["result"] == "Answer from the upstream: pelican-42", finished.report()
    assert finished.outside == [], finished.report()
    (request,) = upstream.requests  # one step, no retry
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "up-model"
    assert "Say hello" in json.dumps(request.body["messages"])
    # Claude Code's Anthropic-only fields never reach an OpenAI-compatible upstream.
    leaked = {"thinking", "context_management", "output_config", "metadata", "anthropic"}
    assert leaked.isdisjoint(request.body), sorted(request.body)


async def test_a_command_claude_code_runs_goes_back_as_its_result_and_the_answer_follows(
    claude: str, upstream: UpstreamServer, tmp_path: Path
) -> None:
    command = json.dumps({"command": "echo tool-ran-here", "description": "Print a word"})
    upstream.script(chat_tool_reply("call_1", "Bash", command), text_reply("Done: ", "pelican-42"))
    # Bash is one of Claude Code's own tools: the model's call goes back to it, it runs the
    # command (allowed without a prompt) and sends the output as the next turn's tool_result.
    options = ("--max-turns", "2", "--allowedTools", "Bash(echo:*)")
    with running_gateway(routes={"up": route(upstream, max_attempts=1)}) as gateway:
        finished = await claude_print(
            claude, gateway.base_url, "up", "Run echo", tmp_path, *options
        )
    assert finished.returncode == 0, finished.report()
    assert finished.result()["result"] == "Done: pelican-42", finished.report()
    first, second = upstream.wait_for_requests(2)
    assert "Bash" in [tool["function"]["name"] for tool in first.body["tools"]]
    (output,) = [m for m in second.body["messages"] if m["role"] == "tool"]
    assert output["tool_call_id"] == "call_1", second.body["messages"]
    assert "tool-ran-here" in json.dumps(output["content"]), output
    assert finished.outside == [], finished.report()
