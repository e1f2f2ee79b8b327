"""Per-facility backlog counters in Redis: readings accepted into the stream minus readings the
processor committed, so ingest can refuse a facility whose readings pile up unprocessed.

Counted in time windows (``window_seconds``) kept for ``horizon_windows`` windows: the backlog is
the sum of ``in - out`` over the windows still kept. Why windows and not two plain counters: the
two sides cannot be kept exactly equal (a client that re-sends a batch counts twice at ingest and
is stored once; a crash between a put and its count, or a replayed commit, skews one side), and
two plain counters would carry every such error for ever. A window's counts expire with it, so
an error is forgotten after the horizon (10 minutes by default) and the counters heal without a
reconcile job; no count is ever clamped, so the two sides may arrive in any order. The price: a
facility's readings that wait longer than the horizon stop counting (the stream's own entry cap
still bounds them).

Keys: ``ps:backlog:{<facility>}:<window number>``, a hash of ``in`` and ``out``; every window of a
facility shares its hash tag, so one script reads them all on a Redis Cluster too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import redis
from redis.cluster import RedisCluster

# KEYS = the facility's windows, the current one first; ARGV = field ('in' / 'out'), count,
# ttl seconds. Adds count to the current window's field; returns the backlog over all of them.
_ADD = """
local n = tonumber(ARGV[2])
if n ~= 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], n)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local backlog = 0
for i = 1, #KEYS do
  local counts = redis.call('HMGET', KEYS[i], 'in', 'out')
  backlog = backlog + (tonumber(counts[1]) or 0) - (tonumber(counts[2]) or 0)
end
return backlog
"""

IN, OUT = "in", "out"


class BacklogCounters:
    """The backlog of each facility, in windows (see the module for why)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        window_seconds: float = 60.0,
        horizon_windows: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_seconds <= 0 or horizon_windows < 1:
            raise ValueError("backlog windows need a positive length and at least one window")
        self.client = client
        self.window_seconds = window_seconds
        self.horizon_windows = horizon_windows
        self._clock = clock
        self._script = client.register_script(_ADD)

    def keys(self, facility: str) -> list[str]:
        """The Redis keys of ``facility``'s windows still counted, the current one first."""
        current = int(self._clock() // self.window_seconds)
        return [
            f"ps:backlog:{{{facility}}}:{window}"
            for window in range(current, current - self.horizon_windows, -1)
        ]

    def add(self, field: str, counts: Mapping[str, int]) -> dict[str, int]:
        """Add ``counts`` (facility -> readings; 0 only reads) to ``field`` (``IN`` at ingest,
        ``OUT`` after a commit); each facility's backlog after it. Off the request path (ingest
        adds from a flusher thread), so a plain pipeline is round trips enough."""
        if field not in (IN, OUT):
            raise ValueError(f"unknown backlog field {field!r}")
        if not counts:
            return {}
        ttl = int(self.window_seconds * (self.horizon_windows + 1)) + 1
        facilities = list(counts)
        calls: list[tuple[list[str], list[str | int]]] = [
            (self.keys(f), [field, int(counts[f]), ttl]) for f in facilities
        ]
        if isinstance(self.client, RedisCluster):
            # a cluster pipeline refuses scripts: one call per facility (its own slot)
            replies = [self._script(keys=keys, args=args) for keys, args in calls]
        else:
            with self.client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    self._script(keys=keys, args=args, client=pipe)
                replies = pipe.execute()
        return {f: int(reply) for f, reply in zip(facilities, replies, strict=True)}

    def backlog(self, facilities: list[str]) -> dict[str, int]:
        """The backlog of each of ``facilities`` now (nothing added)."""
        return self.add(IN, dict.fromkeys(facilities, 0))
