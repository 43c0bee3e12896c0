"""Commands put on the wire by hiredis's packer (C) instead of redis-py's own (Python).

redis-py's asyncio connections pack every command in Python, argument by argument; for the
event writer's scripts (a dozen arguments and more per run) that is about a fifth of the
CPU a command costs the gateway, paid on the way of every event to its readers. hiredis (a
dependency already: it parses the replies) packs the same bytes in one C call.
:func:`hiredis_packing` gives a connection class that packs with it; the bytes sent are the
same (see tests/unit/streams/test_wire.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, TypeVar, cast

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["hiredis_packing", "pack_command"]

C = TypeVar("C", bound=AbstractConnection)


def pack_command(*args: Any) -> bytes:
    """``args`` as one RESP command (an array of bulk strings), as redis-py packs it: a first
    argument holding spaces (``"SCRIPT LOAD"``) is several words of the command's name."""
    first = args[0]
    if isinstance(first, str):
        args = (*first.encode().split(), *args[1:])
    elif b" " in first:
        args = (*first.split(), *args[1:])
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


def hiredis_packing(connection_class: type[C]) -> type[C]:
    """``connection_class`` packing its commands with hiredis (one class per class given)."""
    made = _made.get(connection_class)
    if made is not None:
        return cast(type[C], made)

    class HiredisPacking(connection_class):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            return [pack_command(*args)]

        def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
            return [b"".join([pack_command(*command) for command in commands])]

        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            # redis-py bounds a send with asyncio.wait_for, which on Python 3.11 runs it in
            # a task of its own: a task and a loop step more on the way of every command.
            # asyncio.timeout bounds it the same, in the caller's task. The rest is
            # redis-py's (8.1): connect, health check, and a connection that failed or was
            # interrupted mid-send is dropped.
            if not self.is_connected:
                await self.connect_check_health(check_health=False)
            if check_health:
                await self.check_health()
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            try:
                async with asyncio.timeout(self.socket_timeout):
                    self._writer.writelines(command)
                    await self._writer.drain()
            except TimeoutError:
                await self.disconnect(nowait=True)
                raise RedisTimeoutError("Timeout writing to socket") from None
            except OSError as exc:
                await self.disconnect(nowait=True)
                raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
            except BaseException:
                await self.disconnect(nowait=True)
                raise

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"Hiredis{connection_class.__name__}"
    _made[connection_class] = HiredisPacking
    return HiredisPacking


_made: dict[type[AbstractConnection], type[AbstractConnection]] = {}
