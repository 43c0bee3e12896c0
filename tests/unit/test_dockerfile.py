"""The Dockerfile cannot be built here (no Docker engine); check what can be checked."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Logical lines: continuations joined.
DOCKERFILE = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")


def instruction(name: str) -> list[str]:
    return [
        line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(f"{name} ")
    ]


def test_the_image_runs_the_console_script_the_readme_starts() -> None:
    command = json.loads(instruction("CMD")[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command == ["gateway"]
    assert "gateway" in scripts
    assert "uv run gateway" in (ROOT / "README.md").read_text()


def test_the_build_installs_exactly_the_lock_without_dev_dependencies() -> None:
    runs = instruction("RUN")
    assert any("uv sync --frozen --no-dev" in run for run in runs)


def test_the_runtime_is_slim_and_unprivileged_and_stops_on_sigterm() -> None:
    stages = instruction("FROM")
    assert len(stages) == 2
    assert all("slim" in stage for stage in stages)
    assert instruction("USER") == ["gateway"]
    assert instruction("STOPSIGNAL") == ["SIGTERM"]


def test_the_healthcheck_asks_healthz_on_the_port_the_image_listens_on() -> None:
    healthcheck = " ".join(instruction("HEALTHCHECK"))
    port = re.search(r"GATEWAY_PORT=(\d+)", DOCKERFILE)
    assert port is not None
    assert f"127.0.0.1:{port.group(1)}/healthz" in healthcheck
    assert instruction("EXPOSE") == [port.group(1)]


def test_everything_the_app_serves_is_copied_into_the_image() -> None:
    copied = " ".join(instruction("COPY"))
    for needed in ("gateway", "streams", "web", "pyproject.toml", "uv.lock"):
        assert needed in copied
