from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.upstream_server import UpstreamServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, install_hint: str) -> str:
    """The path of a system binary a test needs: missing in CI is a failure, elsewhere a skip
    that says how to install it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    """Our scriptable OpenAI-compatible upstream on 127.0.0.1, for one test."""
    with UpstreamServer() as server:
        yield server
