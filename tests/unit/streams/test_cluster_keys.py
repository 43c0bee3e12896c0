"""The Redis key layout (``streams/cluster/keys.py``): the keys a script or a transaction
touches together share a hash tag, so Redis Cluster puts them in one slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from gateway.limits.redis_quotas import owner_tag
from streams.cluster.keys import Keys

KEYS = Keys("gw:")


def slots(*keys: str) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (KEYS.run("run_1"), "gw:run:{run_1}"),
        (KEYS.producers("run_1"), "gw:run:{run_1}:producers"),
        (KEYS.events("run_1"), "gw:run:{run_1}:events"),
        (KEYS.lease("host-1-ab"), "gw:instance:{host-1-ab}"),
        (KEYS.instance_runs("host-1-ab"), "gw:instance:{host-1-ab}:runs"),
        (KEYS.cancels("host-1-ab"), "gw:instance:{host-1-ab}:cancels"),
        (KEYS.control("host-1-ab"), "gw:control:{host-1-ab}"),
        (KEYS.quota("runs", owner_tag("alice")), "gw:quota:{alice}:runs"),
        (KEYS.quota("streams", owner_tag(None)), "gw:quota:{-}:streams"),
        (KEYS.quota("active_runs", owner_tag("a b/{c}")), "gw:quota:{a%20b%2F%7Bc%7D}:active_runs"),
        (KEYS.reply("0123abcd"), "gw:reply:0123abcd"),
        (KEYS.chat("chat-1"), "gw:chat:chat-1"),
        (KEYS.instances, "gw:instances"),
        (Keys("other:").run("run_1"), "other:run:{run_1}"),
    ],
)
def test_every_key_is_spelt_as_the_layout_says(made: str, expected: str) -> None:
    assert made == expected


@pytest.mark.parametrize("run_id", ["run_1", "run_0123456789abcdef", "run_x"])
def test_a_run_s_keys_share_one_slot(run_id: str) -> None:
    assert len(slots(KEYS.run(run_id), KEYS.producers(run_id), KEYS.events(run_id))) == 1


@pytest.mark.parametrize("instance", ["a", "host-4242-0a1b2c", "gw-worker-2"])
def test_an_instance_s_keys_and_its_control_channel_share_one_slot(instance: str) -> None:
    made = (
        KEYS.lease(instance),
        KEYS.instance_runs(instance),
        KEYS.cancels(instance),
        KEYS.control(instance),
    )
    assert len(slots(*made)) == 1


@pytest.mark.parametrize("owner", [None, "alice", "-", "a b/{c}", "ключ"])
def test_an_owner_s_quota_keys_share_one_slot(owner: str | None) -> None:
    tag = owner_tag(owner)
    made = [KEYS.quota(kind, tag) for kind in ("runs", "streams", "active_runs")]
    assert len(slots(*made)) == 1


def test_different_runs_spread_over_slots() -> None:
    """The tag is the run id, not a constant: runs spread over the cluster's masters."""
    assert len(slots(*(KEYS.events(f"run_{n}") for n in range(50)))) > 40
