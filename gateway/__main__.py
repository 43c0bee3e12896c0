"""``gateway`` / ``python -m gateway``: start the gateway.

Every setting comes from ``GATEWAY_*`` environment variables (and an optional TOML file named
by ``--config`` / ``GATEWAY_CONFIG_FILE``); the flags below win over both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from pydantic import ValidationError

from .server import run
from .settings import Settings


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Real-time streaming agent gateway. Defaults: 127.0.0.1:8000, in-memory "
        "event log, the built-in demo model and tools.",
    )
    parser.add_argument("--host", help="address to listen on (GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any (GATEWAY_PORT)")
    parser.add_argument("--config", dest="config_file", help="TOML settings file")
    parser.add_argument("--log-level", help="debug, info, warning, error (GATEWAY_LOG_LEVEL)")
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="log every HTTP request (GATEWAY_ACCESS_LOG)",
    )
    parser.add_argument(
        "--demo-token-delay",
        type=float,
        help="seconds between the demo model's tokens (GATEWAY_DEMO_TOKEN_DELAY)",
    )
    args = vars(parser.parse_args(argv))
    return {key: value for key, value in args.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    overrides = parse_args(argv)
    try:
        settings = Settings(**overrides)
        settings.upstream_routes(os.environ)  # fail now if a route's API key is missing
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"gateway: invalid settings: {exc}") from None
    with contextlib.suppress(KeyboardInterrupt):
        run(settings)


if __name__ == "__main__":
    main()
