"""``gateway`` / ``python -m gateway``: start the gateway, check a config file, or hash a key.

Every setting comes from ``GATEWAY_*`` environment variables (and an optional TOML file named
by ``--config`` / ``GATEWAY_CONFIG_FILE``); the flags below win over both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.auth import hash_key, new_key
from gateway.server import run
from gateway.settings import Settings
from gateway.supervisor import supervise
from gateway.worker import shared_store_problem

__all__ = ["build_parser", "check_config", "describe", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Real-time streaming agent gateway. Defaults: 127.0.0.1:8000, in-memory "
        "event log, the built-in demo model and tools.",
    )
    parser.add_argument("--host", help="address to listen on (GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any (GATEWAY_PORT)")
    parser.add_argument("--config", dest="config_file", help="TOML settings file")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes serving the port, every core of a host; more than one needs "
        "GATEWAY_REDIS_URL (GATEWAY_WORKERS)",
    )
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
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument(
        "--check-config",
        metavar="FILE",
        help="validate a settings file (with the environment) and exit: 0 if it is valid",
    )
    actions.add_argument(
        "--hash-key",
        metavar="KEY",
        nargs="?",
        const="",
        help="print the hash to configure for an API key (a new random key if none is "
        "given) and exit",
    )
    return parser


def describe(exc: ValidationError) -> str:
    """Each problem and where it is, without the values (which may be secrets)."""
    return "\n".join(
        f"  {'.'.join(str(part) for part in error['loc']) or '(file)'}: {error['msg']}"
        for error in exc.errors()
    )


def check_config(path: str, overrides: dict[str, Any]) -> int:
    """Validate ``path``; print what is wrong, or a summary. The exit status."""
    if not Path(path).is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    try:
        settings = Settings(**{**overrides, "config_file": path})
        settings.upstream_routes(os.environ)
        settings.check_exposure()
    except ValidationError as exc:
        print(f"{path}: {exc.error_count()} problem(s)", file=sys.stderr)
        print(describe(exc), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if (problem := shared_store_problem(settings)) is not None:
        print(f"{path}: {problem}", file=sys.stderr)
        return 2
    routes = ", ".join(settings.routes) or "none"
    groups = ", ".join(settings.models) or "none"
    keys = ", ".join(settings.api_keys) or "none"
    print(
        f"{path}: valid. Listens on {settings.host}:{settings.port}; routes: {routes}; "
        f"model groups: {groups}; API keys: {keys}"
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    check = args.pop("check_config")
    key = args.pop("hash_key")
    overrides = {name: value for name, value in args.items() if value is not None}
    if key is not None:
        if not key:
            key = new_key()
            print(f"key:  {key}")
        print(f"hash: {hash_key(key)}")
        return
    if check is not None:
        raise SystemExit(check_config(check, overrides))
    try:
        settings = Settings(**overrides)
        settings.upstream_routes(os.environ)  # fail now if a route's API key is missing
        settings.check_exposure()
    except ValidationError as exc:
        raise SystemExit(f"gateway: invalid settings:\n{describe(exc)}") from None
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"gateway: invalid settings: {exc}") from None
    if (problem := shared_store_problem(settings)) is not None:
        print(f"gateway: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if settings.workers > 1:
        raise SystemExit(supervise(settings))
    with contextlib.suppress(KeyboardInterrupt):
        run(settings)


if __name__ == "__main__":
    main()
