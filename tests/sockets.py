"""What the kernel says of a server's TCP connections (``/proc/net/tcp``, ``/proc/net/tcp6``),
and raw clients that misbehave on purpose: they never read, or trickle their request.

A connection the gateway lets go must be gone from the OS, not only from a counter: its
server-side socket must leave ESTABLISHED (and not linger in FIN_WAIT with data queued for a
peer that never reads), which only the kernel's own table shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

# The kernel's numbers for TCP states (include/net/tcp_states.h).
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}
# States in which a server's socket still holds resources: a descriptor, or data the kernel
# keeps trying to send for an orphan (FIN_WAIT1, CLOSING, LAST_ACK). Not these: LISTEN;
# TIME_WAIT (a few bytes in the kernel, no descriptor); FIN_WAIT2, where the server's close
# has been acknowledged and only the peer's own close is awaited (no data, no descriptor).
HELD = frozenset(TCP_STATES.values()) - {"TIME_WAIT", "LISTEN", "CLOSE", "FIN_WAIT2"}


def server_side(port: int) -> dict[int, str]:
    """The server-side sockets of ``port`` that hold resources: peer port -> TCP state."""
    held: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, state = fields[1], fields[2], TCP_STATES.get(fields[3], "?")
                if int(local.rsplit(":", 1)[1], 16) == port and state in HELD:
                    held[int(remote.rsplit(":", 1)[1], 16)] = state
    return held


async def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``condition()`` holds (state another thread or the kernel changes)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (nothing to wait on but the state itself)
            await asyncio.sleep(0.02)


async def connect(port: int, receive_buffer: int | None = None) -> socket.socket:
    """A raw, non-blocking TCP client of 127.0.0.1:``port``; with a tiny ``receive_buffer``
    a server's writes to it pile up at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


def http_request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """The bytes of one HTTP/1.1 request (``Host: 127.0.0.1``; header names with ``_``
    for ``-``)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def receive_all(sock: socket.socket, timeout: float = 10) -> tuple[bytes, str]:
    """Everything the socket receives until the connection ends, and how it ended
    (``"closed"``: an orderly FIN, ``"reset"``: an RST)."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout):
            received += chunk
    except ConnectionResetError:
        return bytes(received), "reset"
    return bytes(received), "closed"
