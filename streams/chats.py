"""Which run is a chat's turn: the store behind the AI SDK face's resume and stop.

A chat (the ``id`` the AI SDK's ``useChat`` sends with every turn) maps to its owner and to
the run of its latest turn. The face asks it which run to resume or stop, and refuses a new
turn while that run is active. The run itself, and whether it is still active, is the run
directory's (:mod:`streams.directory`): this store only names it.

Chat ids are the client's, so they are per key: a chat id another owner holds is refused
(:meth:`ChatDirectory.set`) and reported as not found (:meth:`ChatDirectory.get`), and the
owner ``None`` (a gateway without API keys) is one owner like any other.

Entries are bounded: each expires ``ttl`` seconds after it was last written or read
(:func:`chat_ttl`: the runs' retention TTL plus :data:`TURN_ALLOWANCE` for the turn itself,
since the entry is written when the turn starts and its run stays readable for the
retention TTL after it ends), and the memory implementation holds at most ``max_entries`` (the least recently used goes
first). :class:`MemoryChatDirectory` serves one instance;
:class:`~streams.cluster.chats.RedisChatDirectory` several, sharing Redis.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streams.errors import NotFoundError

__all__ = [
    "MAX_CHAT_ENTRIES",
    "TURN_ALLOWANCE",
    "ChatDirectory",
    "MemoryChatDirectory",
    "chat_not_found",
    "chat_ttl",
]

MAX_CHAT_ENTRIES = 100_000  # chats one instance remembers at most (about 200 bytes each)
# Seconds a chat entry outlives the retention TTL: the time its turn may take. A turn that
# runs longer, with nobody resuming it meanwhile, is still readable by its run id.
TURN_ALLOWANCE = 3600.0


def chat_ttl(retention_ttl: float) -> float:
    """How long a chat entry is kept after its last use, for runs kept ``retention_ttl``."""
    return retention_ttl + TURN_ALLOWANCE


def chat_not_found(chat_id: str) -> NotFoundError:
    """The error for a chat the caller has no turn of (absent, expired, or another's)."""
    return NotFoundError(f"No chat with id '{chat_id}' found.")


class ChatDirectory(Protocol):
    """Chat id → (owner, run id of its latest turn)."""

    async def get(self, chat_id: str, owner: str | None) -> str | None:
        """The run id of ``owner``'s latest turn of ``chat_id``, or None if nobody has the
        chat; raises :class:`~streams.errors.NotFoundError` if another owner has it."""

    async def set(self, chat_id: str, owner: str | None, run_id: str) -> None:
        """Make ``run_id`` ``owner``'s latest turn of ``chat_id`` (a new chat, or one of
        ``owner``'s); raises :class:`~streams.errors.NotFoundError` if another owner has it."""

    async def clear(self, chat_id: str, run_id: str) -> bool:
        """Forget ``chat_id`` if its latest turn is still ``run_id`` (a newer turn stays);
        whether it was forgotten."""


@dataclass(slots=True)
class _Entry:
    owner: str | None
    run_id: str
    expires: float


class MemoryChatDirectory:
    """The chats of one instance, in its memory: at most ``max_entries``, each kept for
    ``ttl`` seconds after its last use."""

    def __init__(
        self,
        ttl: float,
        max_entries: int = MAX_CHAT_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("a chat directory needs a positive ttl and room for one entry")
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        # Least recently used first: the order expiry and eviction both take.
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, chat_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(chat_id)
        if entry is not None and entry.expires <= now:
            del self._entries[chat_id]
            return None
        return entry

    def _touch(self, chat_id: str, entry: _Entry, now: float) -> None:
        entry.expires = now + self._ttl
        self._entries.move_to_end(chat_id)

    async def get(self, chat_id: str, owner: str | None) -> str | None:
        now = self._clock()
        entry = self._live(chat_id, now)
        if entry is None:
            return None
        if entry.owner != owner:
            raise chat_not_found(chat_id)
        self._touch(chat_id, entry, now)
        return entry.run_id

    async def set(self, chat_id: str, owner: str | None, run_id: str) -> None:
        now = self._clock()
        entry = self._live(chat_id, now)
        if entry is not None and entry.owner != owner:
            raise chat_not_found(chat_id)
        if entry is None:
            entry = self._entries[chat_id] = _Entry(owner, run_id, now)
        entry.run_id = run_id
        self._touch(chat_id, entry, now)
        # Expired entries first (they are the oldest), then the least recently used.
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.expires > now and len(entries) <= self._max_entries:
                break
            entries.popitem(last=False)

    async def clear(self, chat_id: str, run_id: str) -> bool:
        entry = self._live(chat_id, self._clock())
        if entry is None or entry.run_id != run_id:
            return False
        del self._entries[chat_id]
        return True
