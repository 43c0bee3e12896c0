"""Stand-ins for a gateway worker's main, for tests of the supervisor (gateway/supervisor.py):
importable by name, as multiprocessing's ``spawn`` imports a worker's target anew, and light
(no gateway is started). A ready stand-in answers a connection on the supervisor's socket
with ``worker <index>``."""

from __future__ import annotations

import signal
import socket
import sys
import time
from typing import Any

__all__ = ["exits_at_once", "ignores_sigterm", "serves_until_sigterm"]


def _greet(sock: socket.socket, index: int) -> None:
    connection, _ = sock.accept()
    with connection:
        connection.sendall(f"worker {index}".encode())


def serves_until_sigterm(settings: Any, sock: socket.socket, index: int) -> None:
    """A worker that answers connections until SIGTERM, then exits with status 0."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    while True:
        _greet(sock, index)


def ignores_sigterm(settings: Any, sock: socket.socket, index: int) -> None:
    """A worker that never drains: it answers one connection, and only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _greet(sock, index)
    while True:
        time.sleep(3600)


def exits_at_once(settings: Any, sock: socket.socket, index: int) -> None:
    """A worker that dies at start (status 3)."""
    raise SystemExit(3)
