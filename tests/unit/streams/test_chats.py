"""The in-memory chat directory (streams/chats.py): owners, compare-and-clear, expiry, the
entry cap, and a fuzz test against a plain model of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.chats import TURN_ALLOWANCE, MemoryChatDirectory, chat_ttl
from streams.errors import NotFoundError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(ttl: float = 10.0, max_entries: int = 100) -> tuple[MemoryChatDirectory, Clock]:
    clock = Clock()
    return MemoryChatDirectory(ttl, max_entries, clock=clock), clock


async def test_a_chat_names_its_latest_turn() -> None:
    chats, _ = directory()
    assert await chats.get("c", "alice") is None
    await chats.set("c", "alice", "run_1")
    assert await chats.get("c", "alice") == "run_1"
    await chats.set("c", "alice", "run_2")
    assert await chats.get("c", "alice") == "run_2"


@pytest.mark.parametrize(("holder", "caller"), [("alice", "bob"), ("alice", None), (None, "alice")])
async def test_another_owners_chat_is_not_found(holder: str | None, caller: str | None) -> None:
    chats, _ = directory()
    await chats.set("c", holder, "run_1")
    with pytest.raises(NotFoundError, match="'c'"):
        await chats.get("c", caller)
    with pytest.raises(NotFoundError):
        await chats.set("c", caller, "run_2")
    assert await chats.get("c", holder) == "run_1"


@pytest.mark.parametrize(
    ("cleared", "expected", "left"), [("run_2", True, None), ("run_1", False, "run_2")]
)
async def test_clear_forgets_only_the_turn_it_names(
    cleared: str, expected: bool, left: str | None
) -> None:
    chats, _ = directory()
    await chats.set("c", "alice", "run_1")
    await chats.set("c", "alice", "run_2")
    assert await chats.clear("c", cleared) is expected
    assert await chats.get("c", "alice") == left
    assert await chats.clear("nobody", "run_1") is False


@pytest.mark.parametrize(("elapsed", "alive"), [(9.99, True), (10.0, False), (50.0, False)])
async def test_an_entry_expires_ttl_after_its_last_use(elapsed: float, alive: bool) -> None:
    chats, clock = directory(ttl=10.0)
    await chats.set("c", "alice", "run_1")
    clock.now += elapsed
    assert (await chats.get("c", "alice")) == ("run_1" if alive else None)
    # Expired, the chat id is free for anyone.
    if not alive:
        await chats.set("c", "bob", "run_2")
        assert await chats.get("c", "bob") == "run_2"


async def test_a_read_renews_an_entry() -> None:
    chats, clock = directory(ttl=10.0)
    await chats.set("c", "alice", "run_1")
    for _ in range(5):
        clock.now += 8
        assert await chats.get("c", "alice") == "run_1"


async def test_the_least_recently_used_entry_goes_first_when_full() -> None:
    chats, _ = directory(max_entries=2)
    await chats.set("a", "alice", "run_a")
    await chats.set("b", "alice", "run_b")
    assert await chats.get("a", "alice") == "run_a"  # now b is the least recently used
    await chats.set("c", "alice", "run_c")
    assert len(chats) == 2
    assert await chats.get("b", "alice") is None
    assert await chats.get("a", "alice") == "run_a"
    assert await chats.get("c", "alice") == "run_c"


async def test_expired_entries_are_dropped_on_a_write() -> None:
    chats, clock = directory(ttl=10.0)
    for index in range(10):
        await chats.set(f"c{index}", "alice", f"run_{index}")
    clock.now += 11
    await chats.set("new", "alice", "run_new")
    assert len(chats) == 1


@pytest.mark.parametrize(("ttl", "max_entries"), [(0, 10), (-1, 10), (10, 0)])
def test_a_directory_needs_a_ttl_and_room(ttl: float, max_entries: int) -> None:
    with pytest.raises(ValueError, match="positive ttl"):
        MemoryChatDirectory(ttl, max_entries)


@pytest.mark.parametrize("retention", [0.0, 600.0])
def test_an_entry_outlives_the_retention_by_the_turn_allowance(retention: float) -> None:
    assert chat_ttl(retention) == retention + TURN_ALLOWANCE


OWNERS = st.sampled_from([None, "alice", "bob"])
CHAT_IDS = st.sampled_from(["a", "b", "c", "d"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), CHAT_IDS, OWNERS, st.sampled_from(["r1", "r2", "r3"])),
        st.tuples(st.just("get"), CHAT_IDS, OWNERS, st.none()),
        st.tuples(st.just("clear"), CHAT_IDS, st.none(), st.sampled_from(["r1", "r2", "r3"])),
        st.tuples(st.just("tick"), st.none(), st.none(), st.floats(0, 6)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPERATIONS, st.integers(1, 4))
async def test_the_directory_behaves_as_a_bounded_expiring_map(
    operations: list[tuple[str, str | None, str | None, object]], cap: int
) -> None:
    chats, clock = directory(ttl=10.0, max_entries=cap)
    # The model: chat id -> (owner, run id, expiry), in least-recently-used order.
    model: dict[str, tuple[str | None, str, float]] = {}

    def live(chat_id: str) -> tuple[str | None, str, float] | None:
        entry = model.get(chat_id)
        if entry is not None and entry[2] <= clock.now:
            del model[chat_id]
            return None
        return entry

    for kind, chat_id, owner, value in operations:
        if kind == "tick":
            assert isinstance(value, float)
            clock.now += value
            continue
        assert chat_id is not None
        entry = live(chat_id)
        if kind == "get":
            if entry is None:
                assert await chats.get(chat_id, owner) is None
            elif entry[0] != owner:
                with pytest.raises(NotFoundError):
                    await chats.get(chat_id, owner)
            else:
                assert await chats.get(chat_id, owner) == entry[1]
                del model[chat_id]
                model[chat_id] = (owner, entry[1], clock.now + 10.0)
        elif kind == "set":
            assert isinstance(value, str)
            if entry is not None and entry[0] != owner:
                with pytest.raises(NotFoundError):
                    await chats.set(chat_id, owner, value)
                continue
            await chats.set(chat_id, owner, value)
            model.pop(chat_id, None)
            model[chat_id] = (owner, value, clock.now + 10.0)
            for other in [key for key, item in model.items() if item[2] <= clock.now]:
                del model[other]
            while len(model) > cap:
                del model[next(iter(model))]
        else:
            assert isinstance(value, str)
            cleared = entry is not None and entry[1] == value
            assert await chats.clear(chat_id, value) is cleared
            if cleared:
                del model[chat_id]
        assert len(chats) <= cap
