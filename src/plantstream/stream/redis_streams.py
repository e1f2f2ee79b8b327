"""The local and on-prem stream: one Redis Stream per shard, with Kinesis' hashing and lineage.

Each shard's stream and open/closed state share a hash tag of their own, so on a Redis Cluster
the shards spread over the nodes; the shard map is one hash. A write is a Lua script that refuses
a closed shard, so a split or merge can never let a record land behind a finished parent.

Key names: the map is ``ps:stream:{<name>}:meta``; a shard is ``ps:stream:{<name>/<id>}:records``
with its state (``open``/``closed``) in ``...:state``. Shards made before that layout (no
``"spread"`` in their map entry) keep ``ps:stream:{<name>}:shard:<id>`` with their state in the
map, in the map's slot, so an existing data directory is read on without a migration; their
children, like every new stream's shards, use the spread layout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis
from prometheus_client import Counter

from plantstream.errors import StreamThrottledError, StreamUnavailableError
from plantstream.stream.base import PutEntry, ReadResult, ShardInfo, StreamRecord
from plantstream.stream.hashing import even_ranges, shard_for
from plantstream.stream.redis_scripts import run_scripts

# KEYS[1] = the shard's state key (or, for an old-layout shard, the map), KEYS[2] = its stream;
# ARGV = min_id, the old-layout shard id or '', the shard's entry cap ('0': none), then the
# records' data. Returns the entry ids, {"closed"} / {"missing"} if the shard was resharded
# under the caller, or {"full"} (nothing added) when the records would pass the cap.
_PUT = """
local state
if ARGV[2] ~= '' then
  local info = redis.call('HGET', KEYS[1], ARGV[2])
  if info then state = cjson.decode(info)['closed'] and 'closed' or 'open' end
else
  state = redis.call('GET', KEYS[1])
end
if not state then return {'missing'} end
if state == 'closed' then return {'closed'} end
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('XLEN', KEYS[2]) + #ARGV - 3 > cap then return {'full'} end
local ids = {}
for i = 4, #ARGV do
  if ARGV[1] ~= '0' then
    ids[#ids + 1] = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[1], '*', 'd', ARGV[i])
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[2], '*', 'd', ARGV[i])
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

REFUSED_FULL = Counter(
    "plantstream_stream_full",
    "Puts the Redis stream refused with stream_full: a shard at its entry cap (shard_cap) or "
    "Redis at its maxmemory (maxmemory).",
    ["reason"],
)


def _shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


class RedisStream:
    """A sharded stream on Redis Streams (one server or a cluster). Thread-safe as far as
    redis-py's client is.

    On a cluster a put returns once a replica also holds the records (``WAIT``, up to
    ``wait_replica_ms``) wherever the shard's primary has one, so a failover loses nothing
    that was acknowledged; a single server has no replica to wait for.
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        retention_hours: int = 24,
        wait_replica_ms: int = 2000,
        max_entries_per_shard: int = 0,
    ) -> None:
        self.client = client
        self.name = name
        self.retention_ms = retention_hours * 3600 * 1000
        # a shard holding this many unprocessed entries refuses more (0: no cap); entries are
        # never dropped to make room: ``trim`` removes only what the processor committed
        self.max_entries_per_shard = max_entries_per_shard
        self.wait_replica_ms = wait_replica_ms
        self._prefix = f"ps:stream:{{{name}}}:"  # the map's own slot; old-layout shards too
        self._meta = self._prefix + "meta"
        self._put_script = client.register_script(_PUT)
        self._reshard_script = client.register_script(_RESHARD)
        self._shards: list[ShardInfo] = []
        self._spread: set[str] = set()  # shards with the per-shard layout

    # -- keys ---------------------------------------------------------------------------

    def shard_key(self, shard_id: str) -> str:
        """The Redis Stream holding ``shard_id``'s records."""
        return self._records_key(shard_id, spread=not self._is_old_layout(shard_id))

    def _records_key(self, shard_id: str, *, spread: bool) -> str:
        if spread:
            return f"ps:stream:{{{self.name}/{shard_id}}}:records"
        return self._prefix + "shard:" + shard_id

    def _state_key(self, shard_id: str) -> str:
        return f"ps:stream:{{{self.name}/{shard_id}}}:state"

    def _is_old_layout(self, shard_id: str) -> bool:
        info = self.client.hget(self._meta, shard_id)
        return info is not None and not json.loads(info).get("spread", False)

    # -- administration ---------------------------------------------------------------

    def _open_states(self, shard_ids: Sequence[str]) -> None:
        # before the map names them: a writer routed to a new shard must find it open. NX: a
        # shard id that exists already (a lost race) keeps its state.
        for shard_id in shard_ids:
            self.client.set(self._state_key(shard_id), "open", nx=True)

    def create(self, shards: int) -> bool:
        """Create the stream with ``shards`` even shards; False if it already exists."""
        if self.client.exists(self._meta):
            return False
        layout = [
            {
                "id": _shard_id(index),
                "parents": [],
                "start": str(start),
                "end": str(end),
                "closed": False,
                "spread": True,
            }
            for index, (start, end) in enumerate(even_ranges(shards))
        ]
        self._open_states([_shard_id(index) for index in range(len(layout))])
        created = self._reshard_script(keys=[self._meta], args=["[]", json.dumps(layout), "create"])
        self._shards = []
        return bool(created)

    def ensure(self, shards: int) -> None:
        """Create the stream unless it exists (its shard layout is then left as it is)."""
        self.create(shards)

    def _next_ids(self, count: int) -> list[str]:
        last = int(self.client.hlen(self._meta)) - 1
        return [_shard_id(last + 1 + offset) for offset in range(count)]

    def _reshard(self, closing: list[str], children: list[dict[str, Any]]) -> None:
        """Open the children's states, swap the map (atomic), then close the parents' states.

        A crash before the last step leaves a parent closed in the map only; ``read`` finishes
        the job, so the parent still ends and its children start.
        """
        self._open_states([child["id"] for child in children])
        self._reshard_script(keys=[self._meta], args=[json.dumps(closing), json.dumps(children)])
        for parent in closing:
            self._close_state(parent)
        self._shards = []

    def _close_state(self, shard_id: str) -> None:
        if not self._is_old_layout(shard_id):  # an old-layout shard was closed in the map
            self.client.set(self._state_key(shard_id), "closed")

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
                "spread": True,
            },
            {
                "id": right,
                "parents": [shard_id],
                "start": str(middle),
                "end": str(shard.end_hash),
                "closed": False,
                "spread": True,
            },
        ]
        self._reshard([shard_id], children)
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
            "spread": True,
        }
        self._reshard([shard_id, adjacent_id], [merged])
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
            if info.get("spread"):
                self._spread.add(info["id"])
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

    def _put_keys(self, shard_id: str) -> tuple[list[str], str]:
        if shard_id in self._spread:
            return [self._state_key(shard_id), self._records_key(shard_id, spread=True)], ""
        return [self._meta, self._records_key(shard_id, spread=False)], shard_id

    def put(self, entries: Sequence[PutEntry]) -> list[str]:
        if not entries:
            return []
        ids: list[str | None] = [None] * len(entries)
        pending = list(range(len(entries)))
        for _ in range(_MAX_ATTEMPTS):
            if not self._shards:
                self._shards = self.list_shards()
                if not self._shards:
                    raise StreamUnavailableError(f"stream {self.name!r} does not exist")
            by_shard: dict[str, list[int]] = {}
            for index in pending:
                shard = shard_for(entries[index].partition_key, self._shards)
                by_shard.setdefault(shard.shard_id, []).append(index)
            calls = []
            min_id = self._min_id()
            for shard_id, indexes in by_shard.items():
                keys, old_id = self._put_keys(shard_id)
                cap = str(self.max_entries_per_shard)
                calls.append((keys, [min_id, old_id, cap, *(entries[i].data for i in indexes)]))
            replies = self._run_put(calls)
            pending = []
            full = [shard_id for shard_id, r in zip(by_shard, replies, strict=True) if _full(r)]
            if full:
                REFUSED_FULL.labels("shard_cap").inc()
                # shards written before are de-duplicated when the caller retries the batch
                raise StreamThrottledError(
                    f"the stream is full (shard {full[0]} holds {self.max_entries_per_shard} "
                    "unprocessed entries); retry later",
                    retry_after=5.0,
                    code="stream_full",
                )
            for indexes, reply in zip(by_shard.values(), replies, strict=True):
                if reply and reply[0] in (b"closed", b"missing"):
                    pending += indexes  # resharded under us: route these again on a fresh map
                    continue
                for index, entry_id in zip(indexes, reply, strict=True):
                    ids[index] = entry_id.decode()
            if not pending:
                return [entry_id for entry_id in ids if entry_id is not None]
            self._shards = []
        raise StreamThrottledError("the stream is being resharded", retry_after=0.5)

    def _run_put(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        try:
            return run_scripts(
                self.client, self._put_script, calls, wait_replica_ms=self.wait_replica_ms
            )
        except redis.exceptions.BusyLoadingError as exc:
            raise StreamThrottledError("Redis is loading its data", retry_after=1.0) from exc
        except redis.RedisError as exc:
            # maxmemory reached (Redis 7 refuses the script, 6.2 fails it at XADD): the
            # stream holds what it may until retention makes room; the gateway keeps the
            # batch and retries. Any shard written before the refusal is de-duplicated.
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or (
                "used memory > 'maxmemory'" in str(exc)
            ):
                REFUSED_FULL.labels("maxmemory").inc()
                raise StreamThrottledError(
                    "the stream is full; retry later", retry_after=5.0, code="stream_full"
                ) from exc
            raise StreamUnavailableError(f"Redis stream unavailable: {exc}") from exc

    def _min_id(self) -> str:
        if self.retention_ms <= 0:
            return "0"
        return f"{int(time.time() * 1000) - self.retention_ms}-0"

    def read(self, shard_id: str, after: str | None, limit: int) -> ReadResult:
        try:
            # the closed flag first: once seen closed, every record of the shard is there
            info = self.client.hget(self._meta, shard_id)
            if info is None:
                raise StreamUnavailableError(f"no shard {shard_id} in stream {self.name!r}")
            shard = json.loads(info)
            closed, spread = bool(shard["closed"]), bool(shard.get("spread"))
            if spread and closed:  # finishes a reshard that stopped between map and state
                self.client.set(self._state_key(shard_id), "closed")
            key = self._records_key(shard_id, spread=spread)
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

    def trim(self, shard_id: str, through: str) -> int:
        """Drop a shard's entries up to and including ``through`` (a committed checkpoint).

        Only the consumer that committed ``through`` may call this: what it removes was
        processed. One single-key command (cluster-safe); returns the entries removed.
        """
        ms, _, seq = through.partition("-")
        after = f"{int(ms)}-{int(seq or 0) + 1}"  # MINID keeps ids >= its argument
        try:
            key = self.shard_key(shard_id)
            return int(self.client.xtrim(key, minid=after, approximate=False))
        except redis.RedisError as exc:
            raise StreamUnavailableError(f"Redis stream unavailable: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def _full(reply: Any) -> bool:
    return bool(reply) and reply[0] == b"full"
