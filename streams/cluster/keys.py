"""The names of the gateway's Redis keys, in one place.

Per run: ``run:{id}`` (a hash: owner, instance, status, last_seq, spec, snapshot: the run's
state without its producers and metadata), ``run:{id}:producers`` (a hash: producer id ->
``[order, producer]``, each written when it changes) and ``run:{id}:events`` (a stream whose
entry ids are ``{seq}-0``, so Redis ids and SSE ids agree). Per instance: ``instance:{id}``
(its lease, a key with a TTL it renews) and ``instance:{id}:runs`` (the runs it is running).
``instances`` is every instance that has registered; ``control:{id}`` the pub/sub channel an
instance takes commands on; ``reply:{token}`` a list the instance that ran a command pushes
its outcome to, for the instance that asked (with a short TTL). Per AI SDK chat:
``chat:{id}`` (a hash: owner, run: its latest turn's run id; with a TTL).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "gw:"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def producers(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:producers"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:events"

    def lease(self, instance: str) -> str:
        return f"{self.prefix}instance:{instance}"

    def instance_runs(self, instance: str) -> str:
        return f"{self.prefix}instance:{instance}:runs"

    @property
    def instances(self) -> str:
        return f"{self.prefix}instances"

    def control(self, instance: str) -> str:
        return f"{self.prefix}control:{instance}"

    def reply(self, token: str) -> str:
        return f"{self.prefix}reply:{token}"

    def chat(self, chat_id: str) -> str:
        return f"{self.prefix}chat:{chat_id}"
