"""The hiredis packer sends the bytes redis-py's own packer sends."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from streams.cluster.wire import hiredis_packing, pack_command

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SADD", "gw:instance:{a}:runs", "run_1"),
    ("EVALSHA", "f" * 40, 3, b"gw:run:{r}:events", b"gw:run:{r}", b"gw:run:{r}:producers"),
    ("ZADD", "k", 1733000000.125, "slot"),
    ("HSET", b"k", b"f", "é", 0.1, -2, 1e20),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"gw"),
    ("SET", "k", memoryview(b"value")),
    ("SET", "k", b"x" * 100_000),  # past redis-py's buffer cutoff: it sends pieces
]


@pytest.mark.parametrize("command", COMMANDS)
def test_the_bytes_are_redis_pys(command: tuple[Any, ...]) -> None:
    assert pack_command(*command) == b"".join(Connection().pack_command(*command))


@pytest.mark.parametrize(
    ("command", "packed"),
    [
        (("PING",), b"*1\r\n$4\r\nPING\r\n"),
        (("SCRIPT LOAD", "x"), b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$1\r\nx\r\n"),
        (("ZREM", "k", 1.5, 7), b"*4\r\n$4\r\nZREM\r\n$1\r\nk\r\n$3\r\n1.5\r\n$1\r\n7\r\n"),
    ],
)
def test_pack_command(command: tuple[Any, ...], packed: bytes) -> None:
    assert pack_command(*command) == packed


@pytest.mark.parametrize("base", [Connection, SSLConnection, UnixDomainSocketConnection])
def test_a_connection_class_packs_with_hiredis(base: type[Connection]) -> None:
    cls = hiredis_packing(base)
    assert issubclass(cls, base)
    assert hiredis_packing(base) is cls  # one class per class
    connection = Connection()
    pipeline = COMMANDS[:5]
    assert cls.pack_command(connection, *COMMANDS[2]) == [pack_command(*COMMANDS[2])]
    assert b"".join(cls.pack_commands(connection, pipeline)) == b"".join(
        connection.pack_commands(pipeline)
    )
