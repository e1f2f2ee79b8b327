"""Hot state in Redis: the latest value of every sensor, never moving backwards in time.

Updates are idempotent (a replayed batch changes nothing) and can be rebuilt from
PostgreSQL after Redis lost its data or was down. One key per facility and one-key scripts:
the same calls work on a Redis Cluster, where each facility's hash lives on its own node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
import redis
from redis.cluster import RedisCluster

from plantstream.model import QUALITY_NAMES, from_epoch_us

# KEYS[1] = a facility's latest hash; ARGV = (field, ts_us, "ts|value|quality") triples.
# Only a strictly newer timestamp replaces what is there: first write wins, replays are no-ops.
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

LatestRow = tuple[str, str, str, int, float, int]  # facility, device, metric, ts_us, value, q
_SEP = "\x1f"


def latest_key(facility: str) -> str:
    # no hash tag needed: no command or script ever touches two of these keys at once
    return f"ps:latest:{facility}"


@dataclass(frozen=True, slots=True)
class LatestValue:
    device: str
    metric: str
    ts_us: int
    value: float
    quality: str

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

    def __init__(self, client: redis.Redis) -> None:  # decode_responses=False; or a cluster
        self.client = client
        self._set_latest = client.register_script(_SET_LATEST)

    def update_latest(self, rows: Iterable[LatestRow]) -> int:
        """Apply readings (any order); return how many sensors moved forward."""
        newest: dict[tuple[str, str, str], tuple[int, float, int]] = {}
        for facility, device, metric, ts_us, value, quality in rows:
            key = (facility, device, metric)
            seen = newest.get(key)
            if seen is None or ts_us > seen[0]:
                newest[key] = (ts_us, value, quality)
        by_facility: dict[str, list[str | int]] = {}
        for (facility, device, metric), (ts_us, value, quality) in newest.items():
            by_facility.setdefault(facility, []).extend(
                (f"{device}{_SEP}{metric}", ts_us, f"{ts_us}|{value!r}|{quality}")
            )
        if not by_facility:
            return 0
        if isinstance(self.client, RedisCluster):
            # a cluster pipeline refuses scripts: one call per facility (a batch has few)
            return sum(
                int(self._set_latest(keys=[latest_key(facility)], args=args))
                for facility, args in by_facility.items()
            )
        with self.client.pipeline(transaction=False) as pipe:
            for facility, args in by_facility.items():
                self._set_latest(keys=[latest_key(facility)], args=args, client=pipe)
            return sum(int(n) for n in pipe.execute())

    def latest(self, facility: str, device: str | None = None) -> list[LatestValue]:
        raw: dict[bytes, bytes] = self.client.hgetall(latest_key(facility))  # type: ignore[assignment]
        values = []
        for field, packed in raw.items():
            dev, _, metric = field.decode().partition(_SEP)
            if device is not None and dev != device:
                continue
            ts, value, quality = packed.decode().split("|")
            values.append(
                LatestValue(
                    dev, metric, int(ts), float(value), QUALITY_NAMES.get(int(quality), "good")
                )
            )
        values.sort(key=lambda v: (v.device, v.metric))
        return values

    def rebuild_latest(self, conn: psycopg.Connection) -> int:
        """Bring Redis up to what PostgreSQL holds (after Redis was down or lost data)."""
        rows = conn.execute(
            """
            SELECT s.facility, s.device, s.metric, r.ts, r.value, r.quality
            FROM sensors s
            CROSS JOIN LATERAL (
                SELECT ts, value, quality FROM readings
                WHERE sensor_id = s.id ORDER BY ts DESC LIMIT 1
            ) r
            """
        ).fetchall()
        from plantstream.model import to_epoch_us

        return self.update_latest(
            (f, d, m, to_epoch_us(ts), value, quality) for f, d, m, ts, value, quality in rows
        )
