"""The Lua script that writes a batch of one run's events, and its arguments.

One ``EVALSHA`` per run per batch instead of an ``XADD`` per event and an ``HSET`` or two:
what costs the owner's CPU is redis-py packing and parsing each command, not Redis running
them, so the events go as the arguments of one command and Redis adds them to the stream.
Every key the script touches is the run's (one hash tag: one slot on a Redis Cluster).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from streams.events import Event

__all__ = ["WRITE_EVENTS", "WRITE_EVENTS_SHA", "write_events_args"]

# KEYS: the run's events stream, its hash, its producers hash.
# ARGV: MAXLEN (approximate), TTL in seconds (0: the run goes on), how many fields of the
# run's hash follow, how many producers, then those fields and values, the producers' ids
# and values, then each event's seq and JSON.
# An XADD refused (the stream holds a later entry: another instance ended the run while this
# one could not reach Redis) does not stop the others, as in a pipeline: the script returns
# the first refusal's message, or nil when every event went in.
WRITE_EVENTS = """
local maxlen = ARGV[1]
local ttl = tonumber(ARGV[2])
local nrun = tonumber(ARGV[3])
local nprod = tonumber(ARGV[4])
local runs = 5
local prods = runs + 2 * nrun
local first = prods + 2 * nprod
local refused = false
for i = first, #ARGV, 2 do
  local id = ARGV[i] .. '-0'
  local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', maxlen, id, 'e', ARGV[i + 1])
  if type(added) == 'table' and added.err and not refused then
    refused = added.err
  end
end
if nrun > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, runs, prods - 1))
end
-- A producer at a time: a batch may carry more than unpack() can (a parallel run's start).
for i = prods, first - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return refused
"""

WRITE_EVENTS_SHA = hashlib.sha1(WRITE_EVENTS.encode()).hexdigest()


def write_events_args(
    events: Sequence[Event],
    run_fields: Sequence[bytes],
    producers: Mapping[str, bytes],
    maxlen: int,
    ttl: int,
) -> list[bytes]:
    """The ``ARGV`` of :data:`WRITE_EVENTS` for ``events`` (in order) of one run: the fields
    and values of its hash to set (``run_fields``, alternating), its ``producers`` changed
    (id -> encoded value), the stream's ``maxlen``, and ``ttl`` seconds for all three keys
    (0: none, the run goes on)."""
    if len(run_fields) % 2:
        raise ValueError("run_fields alternates fields and values")
    args = [b"%d" % maxlen, b"%d" % ttl, b"%d" % (len(run_fields) // 2), b"%d" % len(producers)]
    args += run_fields
    for producer, value in producers.items():
        args += (producer.encode(), value)
    for event in events:
        args += (b"%d" % event.seq, event.json)
    return args
