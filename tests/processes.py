"""Third-party command-line clients the tests drive (Codex, Claude Code), run to their end."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

__all__ = ["run_to_end"]


async def run_to_end(
    *argv: str, env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> tuple[int, str, str]:
    """Run ``argv`` with no input until it exits: its exit status, stdout and stderr. Past
    ``timeout`` seconds it is killed (and :class:`TimeoutError` fails the test)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
