"""Hot state in Redis: the latest value of every sensor, never moving backwards in time.

Updates are idempotent (a replayed batch changes nothing) and can be rebuilt from
PostgreSQL after Redis lost its data or was down. One key per facility and one-key scripts:
the same calls work on a Redis Cluster, where each facility's hash lives on its own node.

No Redis command grows with a facility's size: writes go in scripts of at most ``chunk``
sensors (Redis refuses a command of more than 1,048,576 arguments, 349,525 sensors), reads
walk the hash with ``HSCAN``, and the rebuild pages through the sensors ``chunk`` at a time.

"Latest" is ordered by a reading's *rank*: its timestamp, capped at the time it was received
plus ``max_ahead_us``. A reading stamped in the future (the window allows minutes) is stored
and shown as it is, but it cannot hold the place of "latest" beyond that small skew: the next
reading received after it replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg
import redis
from redis.cluster import RedisCluster

from plantstream.model import QUALITY_NAMES, Value, from_epoch_us, now_us, to_epoch_us

# KEYS[1] = a facility's latest hash; ARGV = (field, rank_us, "rank|ts|value|quality") triples
# (a typed value is spelled with a type letter, see encode_value; its quality may carry the
# source's code as "quality:code").
# Only a strictly higher rank replaces what is there: first write wins, replays are no-ops.
# (A value written before ranks existed reads "ts|value|quality": its rank is its timestamp.)
_SET_LATEST = """
local changed = 0
for i = 1, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or tonumber(string.match(current, '^[^|]+')) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    changed = changed + 1
  end
end
return changed
"""

LatestRow = tuple[str, str, str, int, Value, int]  # facility, device, metric, ts_us, value, q
# the same with its rank (ts_us capped at received + skew) as a 7th field, and optionally the
# source's quality code (None: none) as an 8th
RankedRow = tuple[str, str, str, int, Value, int, int]
CodedRow = tuple[str, str, str, int, Value, int, int, int | None]
_SEP = "\x1f"
CHUNK_SENSORS = 10_000  # sensors per Redis script call and per rebuild page
MAX_AHEAD_US = 5_000_000  # how far past its receive time a reading still ranks by its own ts
_CALLS_PER_PIPELINE = 8  # chunks sent in one round trip (a bounded request buffer)


def latest_key(facility: str) -> str:
    # no hash tag needed: no command or script ever touches two of these keys at once
    return f"ps:latest:{facility}"


def rank_of(ts_us: int, received_us: int, max_ahead_us: int = MAX_AHEAD_US) -> int:
    """A reading's place in the "latest" order: its time, at most ``max_ahead_us`` ahead."""
    return min(ts_us, received_us + max_ahead_us)


def latest_field(device: str, metric: str) -> str:
    """The field of a sensor in its facility's latest hash."""
    return f"{device}{_SEP}{metric}"


def split_field(field: bytes) -> tuple[str, str]:
    """(device, metric) of a latest hash's field."""
    device, _, metric = field.decode().partition(_SEP)
    return device, metric


def encode_value(value: Value) -> str:
    """A value as the latest hash spells it: a double as before (``repr``), any other type
    behind a letter a float's spelling never starts with: ``i`` int64, ``b`` bool, ``s`` text."""
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, int):
        return f"i{value}"
    if isinstance(value, str):
        return f"s{value}"
    return repr(value)


def decode_value(text: str) -> tuple[Value, str]:
    """(value, value type name) of ``encode_value``'s spelling."""
    kind = text[:1]
    if kind == "i":
        return int(text[1:]), "int64"
    if kind == "b":
        return text[1:] == "1", "bool"
    if kind == "s":
        return text[1:], "string"
    return float(text), "double"


def unpack_latest(device: str, metric: str, packed: bytes) -> LatestValue:
    """A latest hash's value: ``rank|ts|value|quality`` (or ``ts|value|quality`` written
    before ranks existed). A text value may hold ``|``: the value is what lies between the
    second and the last separator."""
    head = packed.decode().split("|", 2)
    if "|" in head[2]:
        ts, (value, _, quality) = head[1], head[2].rpartition("|")
    else:  # before ranks: ts|value|quality, always a double
        ts, value, quality = head
    quality, _, code = quality.partition(":")
    typed, value_type = decode_value(value)
    return LatestValue(
        device,
        metric,
        int(ts),
        typed,
        QUALITY_NAMES.get(int(quality), "good"),
        value_type,
        int(code) if code else None,
    )


@dataclass(frozen=True, slots=True)
class LatestValue:
    device: str
    metric: str
    ts_us: int
    value: Value
    quality: str
    value_type: str = "double"  # "string" also stands for a state (the signal says which)
    quality_code: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "metric": self.metric,
            "ts": from_epoch_us(self.ts_us).isoformat().replace("+00:00", "Z"),
            "value": self.value,
            "quality": self.quality,
        }


class HotState:
    """Latest values per facility in Redis hashes."""

    def __init__(
        self,
        client: redis.Redis,  # decode_responses=False; or a cluster
        *,
        chunk: int = CHUNK_SENSORS,
        max_ahead_us: int = MAX_AHEAD_US,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.client = client
        self.chunk = chunk
        self.max_ahead_us = max_ahead_us
        self._set_latest = client.register_script(_SET_LATEST)

    def update_latest(self, rows: Iterable[LatestRow | RankedRow | CodedRow]) -> int:
        """Apply readings (any order); return how many sensors moved forward.

        A row without a rank ranks by its timestamp. A value keeps its type (int64 exact,
        bool, text); an 8th field, when not None, is the source's quality code.
        """
        newest: dict[tuple[str, str, str], tuple[int, int, Value, str]] = {}
        for row in rows:
            facility, device, metric, ts_us, value, quality = row[:6]
            rank = row[6] if len(row) > 6 else ts_us
            code = row[7] if len(row) > 7 else None
            key = (facility, device, metric)
            seen = newest.get(key)
            if seen is None or (rank, ts_us) > seen[:2]:
                newest[key] = (
                    rank,
                    ts_us,
                    value,
                    f"{quality}" if code is None else f"{quality}:{code}",
                )
        by_facility: dict[str, list[str | int]] = {}
        for (facility, device, metric), (rank, ts_us, value, mark) in newest.items():
            by_facility.setdefault(facility, []).extend(
                (
                    latest_field(device, metric),
                    rank,
                    f"{rank}|{ts_us}|{encode_value(value)}|{mark}",
                )
            )
        calls = [
            (latest_key(facility), args[start : start + 3 * self.chunk])  # bounded commands
            for facility, args in by_facility.items()
            for start in range(0, len(args), 3 * self.chunk)
        ]
        if isinstance(self.client, RedisCluster):
            # a cluster pipeline refuses scripts: one call per chunk (a batch has few)
            return sum(int(self._set_latest(keys=[hkey], args=args)) for hkey, args in calls)
        changed = 0
        for start in range(0, len(calls), _CALLS_PER_PIPELINE):
            with self.client.pipeline(transaction=False) as pipe:
                for hkey, args in calls[start : start + _CALLS_PER_PIPELINE]:
                    self._set_latest(keys=[hkey], args=args, client=pipe)
                changed += sum(int(n) for n in pipe.execute())
        return changed

    def latest(self, facility: str, device: str | None = None) -> list[LatestValue]:
        match = None if device is None else glob_escape(device) + _SEP + "*"
        values = []
        for field, packed in self._scan(latest_key(facility), match):
            dev, metric = split_field(field)
            if device is not None and dev != device:
                continue
            values.append(unpack_latest(dev, metric, packed))
        values.sort(key=lambda v: (v.device, v.metric))
        return values

    def _scan(self, key: str, match: str | None) -> Iterator[tuple[bytes, bytes]]:
        # HSCAN, not HGETALL: a facility of any size is read in bounded replies. A field
        # written during the scan may be seen twice: the last one seen is the newer.
        seen: dict[bytes, bytes] = {}
        for field, packed in self.client.hscan_iter(key, match=match, count=self.chunk):
            seen[field] = packed
        return iter(seen.items())

    def rebuild_latest(self, conn: psycopg.Connection) -> int:
        """Bring Redis up to what PostgreSQL holds (after Redis was down or lost data).

        Pages through the sensors by id, ``chunk`` at a time (bounded memory, bounded
        commands); each page is applied before the next is read. A reading stamped more than
        ``max_ahead_us`` after now ranks as now plus that skew, as it would have live.
        """
        cap = now_us() + self.max_ahead_us
        changed, after = 0, 0
        while True:
            rows = conn.execute(
                """
                SELECT s.id, s.facility, s.device, s.metric, r.ts, r.value, r.quality,
                       s.value_type, r.value_int, r.value_text, r.quality_code
                FROM (SELECT id, facility, device, metric, value_type FROM sensors
                      WHERE id > %s ORDER BY id LIMIT %s) s
                LEFT JOIN LATERAL (
                    SELECT ts, value, quality, value_int, value_text, quality_code FROM readings
                    WHERE sensor_id = s.id ORDER BY ts DESC LIMIT 1
                ) r ON true
                ORDER BY s.id
                """,
                (after, self.chunk),
            ).fetchall()
            page: list[CodedRow] = []
            for _, f, d, m, ts, value, quality, vtype, vint, vtext, code in rows:
                if ts is not None:  # a sensor with no reading (yet, or any more)
                    ts_us = to_epoch_us(ts)
                    typed = stored_value(vtype, value, vint, vtext)
                    page.append((f, d, m, ts_us, typed, quality, min(ts_us, cap), code))
            changed += self.update_latest(page)
            if len(rows) < self.chunk:
                return changed
            after = int(rows[-1][0])


def stored_value(
    value_type: str, value: float | None, value_int: int | None, value_text: str | None
) -> Value:
    """A stored reading's value as its sensor's type says (an int64 row written before value
    types existed holds its integral value in ``value`` only)."""
    if value_text is not None:
        return value_text
    if value_int is not None:
        return int(value_int)
    number = 0.0 if value is None else float(value)
    if value_type == "int64":
        return int(number)
    if value_type == "bool":
        return number != 0.0
    return number


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)
