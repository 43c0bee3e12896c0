"""The names of the gateway's Redis keys, in one place.

Every key that a Lua script or a transaction touches together with another shares a *hash
tag* with it (the part in braces: Redis Cluster puts keys with the same tag in the same
slot), so the gateway works on a cluster as on a single Redis:

=================================  =========================================================
key                                what it holds
=================================  =========================================================
``run:{RUN}``                      a hash: owner, instance, status, last_seq, spec, snapshot
                                   (the run's state without its producers and metadata)
``run:{RUN}:producers``            a hash: producer id -> ``[order, producer]``, each written
                                   when it changes
``run:{RUN}:events``               a stream whose entry ids are ``{seq}-0`` (Redis ids and
                                   SSE ids agree)
``instance:{INSTANCE}``            its lease: a key with a TTL it renews
``instance:{INSTANCE}:runs``       the runs it is running
``instance:{INSTANCE}:cancels``    cancels asked for its runs by other instances, kept until
                                   it has taken them (a cancel that cannot be lost)
``control:{INSTANCE}``             the pub/sub channel it takes commands on (sharded pub/sub
                                   on a cluster: the same slot as its keys)
``quota:{OWNER}:runs``             an API key's token bucket (runs per minute)
``quota:{OWNER}:streams``          its open streams' slots
``quota:{OWNER}:active_runs``      its active runs' slots
``reply:TOKEN``                    a list the instance that ran a command pushes its outcome
                                   to, for the instance that asked (short TTL)
``chat:CHAT``                      an AI SDK chat: a hash of owner and run (its latest turn)
``instances``                      every instance that has registered
=================================  =========================================================

A key that is only ever used alone (a reply list, a chat) needs no tag. A step that spans
tags (a run's end and its instance's set of runs, say) is two commands, each of one slot,
ordered so that a crash between them leaves nothing a sweep does not mend.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "gw:"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{{{run_id}}}"

    def producers(self, run_id: str) -> str:
        return f"{self.prefix}run:{{{run_id}}}:producers"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}run:{{{run_id}}}:events"

    def lease(self, instance: str) -> str:
        return f"{self.prefix}instance:{{{instance}}}"

    def instance_runs(self, instance: str) -> str:
        return f"{self.prefix}instance:{{{instance}}}:runs"

    def cancels(self, instance: str) -> str:
        return f"{self.prefix}instance:{{{instance}}}:cancels"

    @property
    def instances(self) -> str:
        return f"{self.prefix}instances"

    def control(self, instance: str) -> str:
        return f"{self.prefix}control:{{{instance}}}"

    def reply(self, token: str) -> str:
        return f"{self.prefix}reply:{token}"

    def chat(self, chat_id: str) -> str:
        return f"{self.prefix}chat:{chat_id}"

    def quota(self, kind: str, owner_tag: str) -> str:
        """``kind`` (``runs``, ``streams``, ``active_runs``) of the API key ``owner_tag``
        names (see :func:`gateway.limits.redis_quotas.owner_tag`)."""
        return f"{self.prefix}quota:{{{owner_tag}}}:{kind}"
