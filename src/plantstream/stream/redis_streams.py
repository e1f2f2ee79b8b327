"""The local and on-prem stream: one Redis Stream per shard, with Kinesis' hashing and lineage.

Writes go through a Lua script that refuses closed shards, so a split or merge (also atomic
in Lua) can never let a record land behind a parent that is already finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis

from plantstream.errors import StreamThrottledError, StreamUnavailableError
from plantstream.stream.base import PutEntry, ReadResult, ShardInfo, StreamRecord
from plantstream.stream.hashing import even_ranges, shard_for

# KEYS[1] = meta hash; ARGV = min_id, then (shard_id, data) pairs.
# Returns the entry ids, or {"closed", shard_id} if a shard was closed under the caller.
_PUT = """
local prefix = string.sub(KEYS[1], 1, -5)
local ids = {}
for i = 2, #ARGV, 2 do
  local info = redis.call('HGET', KEYS[1], ARGV[i])
  if not info then return {'missing', ARGV[i]} end
  if cjson.decode(info)['closed'] then return {'closed', ARGV[i]} end
end
for i = 2, #ARGV, 2 do
  local key = prefix .. 'shard:' .. ARGV[i]
  if ARGV[1] ~= '0' then
    ids[#ids + 1] = redis.call('XADD', key, 'MINID', '~', ARGV[1], '*', 'd', ARGV[i + 1])
  else
    ids[#ids + 1] = redis.call('XADD', key, '*', 'd', ARGV[i + 1])
  end
end
return ids
"""

# KEYS[1] = meta hash; ARGV = json of shards to close, json of shards to add[, "create"]
_RESHARD = """
if ARGV[3] == 'create' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for _, shard in ipairs(cjson.decode(ARGV[2])) do
  if redis.call('HEXISTS', KEYS[1], shard['id']) == 1 then
    return redis.error_reply('shard ' .. shard['id'] .. ' exists')
  end
end
local closing = cjson.decode(ARGV[1])
for _, id in ipairs(closing) do
  local info = redis.call('HGET', KEYS[1], id)
  if not info then return redis.error_reply('no shard ' .. id) end
  local shard = cjson.decode(info)
  if shard['closed'] then return redis.error_reply('shard ' .. id .. ' is closed') end
  shard['closed'] = true
  redis.call('HSET', KEYS[1], id, cjson.encode(shard))
end
for _, shard in ipairs(cjson.decode(ARGV[2])) do
  redis.call('HSET', KEYS[1], shard['id'], cjson.encode(shard))
end
return 1
"""

_MAX_ATTEMPTS = 5


def _shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


class RedisStream:
    """A sharded stream on Redis Streams. Thread-safe as far as redis-py's client is."""

    def __init__(self, client: redis.Redis, name: str, *, retention_hours: int = 24) -> None:
        self.client = client
        self.name = name
        self.retention_ms = retention_hours * 3600 * 1000
        # one hash tag keeps every key of the stream in one slot (Redis Cluster friendly)
        self._prefix = f"ps:stream:{{{name}}}:"
        self._meta = self._prefix + "meta"
        self._put_script = client.register_script(_PUT)
        self._reshard_script = client.register_script(_RESHARD)
        self._shards: list[ShardInfo] = []

    # -- administration ---------------------------------------------------------------

    def create(self, shards: int) -> bool:
        """Create the stream with ``shards`` even shards; False if it already exists."""
        layout = [
            {
                "id": _shard_id(index),
                "parents": [],
                "start": str(start),
                "end": str(end),
                "closed": False,
            }
            for index, (start, end) in enumerate(even_ranges(shards))
        ]
        created = self._reshard_script(keys=[self._meta], args=["[]", json.dumps(layout), "create"])
        self._shards = []
        return bool(created)

    def ensure(self, shards: int) -> None:
        """Create the stream unless it exists (its shard layout is then left as it is)."""
        self.create(shards)

    def _next_ids(self, count: int) -> list[str]:
        last = int(self.client.hlen(self._meta)) - 1
        return [_shard_id(last + 1 + offset) for offset in range(count)]

    def split(self, shard_id: str, at_hash: int | None = None) -> tuple[str, str]:
        """Split an open shard in two at ``at_hash`` (default: the middle)."""
        shard = self._shard(shard_id)
        middle = at_hash if at_hash is not None else (shard.start_hash + shard.end_hash + 1) // 2
        if not shard.start_hash < middle <= shard.end_hash:
            raise ValueError("split point must fall inside the shard's range")
        left, right = self._next_ids(2)
        children = [
            {
                "id": left,
                "parents": [shard_id],
                "start": str(shard.start_hash),
                "end": str(middle - 1),
                "closed": False,
            },
            {
                "id": right,
                "parents": [shard_id],
                "start": str(middle),
                "end": str(shard.end_hash),
                "closed": False,
            },
        ]
        self._reshard_script(keys=[self._meta], args=[json.dumps([shard_id]), json.dumps(children)])
        self._shards = []
        return left, right

    def merge(self, shard_id: str, adjacent_id: str) -> str:
        """Merge two open shards with adjacent ranges into one."""
        a, b = sorted((self._shard(shard_id), self._shard(adjacent_id)), key=lambda s: s.start_hash)
        if a.end_hash + 1 != b.start_hash:
            raise ValueError("shards are not adjacent")
        (child,) = self._next_ids(1)
        merged = {
            "id": child,
            "parents": [shard_id, adjacent_id],
            "start": str(a.start_hash),
            "end": str(b.end_hash),
            "closed": False,
        }
        self._reshard_script(
            keys=[self._meta], args=[json.dumps([shard_id, adjacent_id]), json.dumps([merged])]
        )
        self._shards = []
        return child

    def _shard(self, shard_id: str) -> ShardInfo:
        for shard in self.list_shards():
            if shard.shard_id == shard_id:
                return shard
        raise LookupError(f"no shard {shard_id}")

    # -- the Stream contract ----------------------------------------------------------

    def list_shards(self) -> list[ShardInfo]:
        try:
            raw = self.client.hgetall(self._meta)
        except redis.RedisError as exc:
            raise StreamUnavailableError(f"Redis stream unavailable: {exc}") from exc
        shards = []
        for value in raw.values():
            info = json.loads(value)
            shards.append(
                ShardInfo(
                    info["id"],
                    tuple(info["parents"]),
                    int(info["start"]),
                    int(info["end"]),
                    bool(info["closed"]),
                )
            )
        shards.sort(key=lambda s: s.shard_id)
        return shards

    def put(self, entries: Sequence[PutEntry]) -> list[str]:
        if not entries:
            return []
        for _ in range(_MAX_ATTEMPTS):
            if not self._shards:
                self._shards = self.list_shards()
                if not self._shards:
                    raise StreamUnavailableError(f"stream {self.name!r} does not exist")
            args: list[Any] = [self._min_id()]
            for entry in entries:
                args += [shard_for(entry.partition_key, self._shards).shard_id, entry.data]
            try:
                result = self._put_script(keys=[self._meta], args=args)
            except redis.exceptions.BusyLoadingError as exc:
                raise StreamThrottledError("Redis is loading its data", retry_after=1.0) from exc
            except redis.RedisError as exc:
                # maxmemory reached (Redis 7 refuses the script, 6.2 fails it at XADD): the
                # stream holds what it may until retention makes room; the gateway keeps the
                # batch and retries. Any shard written before the refusal is de-duplicated.
                if isinstance(exc, redis.exceptions.OutOfMemoryError) or (
                    "used memory > 'maxmemory'" in str(exc)
                ):
                    raise StreamThrottledError(
                        "the stream is full; retry later", retry_after=5.0, code="stream_full"
                    ) from exc
                raise StreamUnavailableError(f"Redis stream unavailable: {exc}") from exc
            if result and result[0] in (b"closed", b"missing"):
                self._shards = []  # resharded under us: route again on a fresh map
                continue
            return [entry_id.decode() for entry_id in result]
        raise StreamThrottledError("the stream is being resharded", retry_after=0.5)

    def _min_id(self) -> str:
        if self.retention_ms <= 0:
            return "0"
        return f"{int(time.time() * 1000) - self.retention_ms}-0"

    def read(self, shard_id: str, after: str | None, limit: int) -> ReadResult:
        key = self._prefix + "shard:" + shard_id
        try:
            # the closed flag first: once seen closed, every record of the shard is there
            info = self.client.hget(self._meta, shard_id)
            if info is None:
                raise StreamUnavailableError(f"no shard {shard_id} in stream {self.name!r}")
            closed = bool(json.loads(info)["closed"])
            start = "-" if after is None else f"({after}"
            with self.client.pipeline(transaction=False) as pipe:
                pipe.xrange(key, min=start, max="+", count=limit)
                pipe.xrevrange(key, max="+", min="-", count=1)
                entries, tip = pipe.execute()
        except redis.RedisError as exc:
            raise StreamUnavailableError(f"Redis stream unavailable: {exc}") from exc
        records = [StreamRecord(entry_id.decode(), fields[b"d"]) for entry_id, fields in entries]
        behind_ms = None
        if tip:
            last = records[-1].sequence if records else after
            tip_ms = int(tip[0][0].split(b"-")[0])
            behind_ms = max(0, tip_ms - int(last.split("-")[0])) if last else tip_ms
        return ReadResult(
            records, end_of_shard=closed and len(records) < limit, behind_ms=behind_ms
        )

    def close(self) -> None:
        self.client.close()
