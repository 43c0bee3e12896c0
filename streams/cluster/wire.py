"""Commands put on the wire by hiredis's packer (C) instead of redis-py's own (Python).

redis-py's asyncio connections pack every command in Python, argument by argument; for the
event writer's scripts (a dozen arguments and more per run) that is about a fifth of the
CPU a command costs the gateway, paid on the way of every event to its readers. hiredis (a
dependency already: it parses the replies) packs the same bytes in one C call.
:func:`hiredis_packing` gives a connection class that packs with it; the bytes sent are the
same (see tests/unit/streams/test_wire.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

import hiredis
from redis.asyncio.connection import AbstractConnection

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

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"Hiredis{connection_class.__name__}"
    _made[connection_class] = HiredisPacking
    return HiredisPacking


_made: dict[type[AbstractConnection], type[AbstractConnection]] = {}
