"""Detection's state in Redis (sensor states, dropout flags, data clocks, the sweep lock: keys per
facility, hash-tagged for Redis Cluster) and the SQL that relearns a lost state from rollups."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import psycopg
import redis
from redis.cluster import RedisCluster

from plantstream.store.sensors import SensorKey

# Every key of a facility carries the facility as its hash tag (``ps:{facility}:...``), so the
# keys one script touches sit in one Redis Cluster slot. Keys under the first names
# (``ps:detect:F``, ``ps:missing:F``, ``ps:clock:F``, ``ps:sweep:F``) are no longer read: the
# state is rebuilt from PostgreSQL as after Redis lost it (open dropouts included), and they
# may be deleted. Values are opaque bytes here; ``plantstream.detect`` gives them meaning.
_SEP = "\x1f"

# KEYS[1] = clock; ARGV[1] = ts: the facility's data clock only moves forward
_ADVANCE = """
local current = redis.call('GET', KEYS[1]) or '-1'
if tonumber(ARGV[1]) > tonumber(current) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return current
"""
# KEYS = sweep lock, states, dropout flags; ARGV[1] = how long the lock holds, ms.
# One processor sweeps a facility at a time, and reads states and flags as of one moment.
_CLAIM_SWEEP = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return false
end
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""


def state_key(facility: str) -> str:
    """Hash of the facility's sensor states, by ``device\\x1fmetric``."""
    return f"ps:{{{facility}}}:detect"


def missing_key(facility: str) -> str:
    """Hash of the facility's sensors with an open dropout, by ``device\\x1fmetric``."""
    return f"ps:{{{facility}}}:missing"


def clock_key(facility: str) -> str:
    """The facility's data clock: the newest true reading time seen, microseconds."""
    return f"ps:{{{facility}}}:clock"


def sweep_key(facility: str) -> str:
    """Held while one processor sweeps the facility for silent devices."""
    return f"ps:{{{facility}}}:sweep"


def field(device: str, metric: str) -> str:
    return f"{device}{_SEP}{metric}"


def split_field(name: str) -> tuple[str, str]:
    device, _, metric = name.partition(_SEP)
    return device, metric


class DetectionStateStore:
    """Sensor states, dropout flags, data clocks and the sweep lock of every facility."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client
        self._advance = client.register_script(_ADVANCE)
        self._claim_sweep = client.register_script(_CLAIM_SWEEP)

    def get_states(self, sensors: Sequence[SensorKey]) -> list[bytes | None]:
        """The packed state of each sensor, in order; None where Redis has none."""
        # one HMGET per facility, all in one round trip
        by_facility: dict[str, list[int]] = defaultdict(list)
        for i, (facility, _, _) in enumerate(sensors):
            by_facility[facility].append(i)
        found: list[bytes | None] = [None] * len(sensors)
        with self.client.pipeline(transaction=False) as pipe:
            for facility, positions in by_facility.items():
                pipe.hmget(state_key(facility), [field(*sensors[i][1:]) for i in positions])
            for positions, values in zip(by_facility.values(), pipe.execute(), strict=True):
                for i, value in zip(positions, values, strict=True):
                    found[i] = value
        return found

    def get_states_flagged(
        self, sensors: Sequence[SensorKey]
    ) -> tuple[list[bytes | None], set[SensorKey]]:
        """``get_states`` and ``flagged`` of these sensors, in one round trip."""
        by_facility: dict[str, list[int]] = defaultdict(list)
        for i, (facility, _, _) in enumerate(sensors):
            by_facility[facility].append(i)
        found: list[bytes | None] = [None] * len(sensors)
        flagged: set[SensorKey] = set()
        with self.client.pipeline(transaction=False) as pipe:
            for facility, positions in by_facility.items():
                names = [field(*sensors[i][1:]) for i in positions]
                pipe.hmget(state_key(facility), names)
                pipe.hmget(missing_key(facility), names)
            answers = pipe.execute()
        for n, positions in enumerate(by_facility.values()):
            values, flags = answers[2 * n], answers[2 * n + 1]
            for i, value, flag in zip(positions, values, flags, strict=True):
                found[i] = value
                if flag:
                    flagged.add(sensors[i])
        return found, flagged

    def put_states(
        self,
        states: Iterable[tuple[SensorKey, bytes]],
        *,
        unflag: Iterable[SensorKey] = (),
        clocks: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Store the packed states, then drop the ``unflag`` sensors' dropout flags and move
        the ``clocks`` forward (``advance_clocks``), in one round trip where the keys allow;
        the clocks as they now stand."""
        by_facility: dict[str, dict[str, bytes]] = defaultdict(dict)
        for (facility, device, metric), packed in states:
            by_facility[facility][field(device, metric)] = packed
        clocks = clocks or {}
        together = not isinstance(self.client, RedisCluster)  # scripts: one node at a time
        with self.client.pipeline(transaction=False) as pipe:
            for facility, mapping in by_facility.items():  # one HSET per facility
                pipe.hset(state_key(facility), mapping=mapping)  # type: ignore[arg-type]
            for facility, device, metric in unflag:
                pipe.hdel(missing_key(facility), field(device, metric))
            if together:  # EVALSHA itself: a script handed to a pipeline costs a round trip
                for facility, ts_us in clocks.items():
                    pipe.evalsha(self._advance.sha, 1, clock_key(facility), ts_us)
            answers = pipe.execute(raise_on_error=False)
        for answer in answers[: len(answers) - len(clocks) if together else len(answers)]:
            if isinstance(answer, Exception):
                raise answer
        if not together or any(isinstance(a, Exception) for a in answers):
            return self.advance_clocks(clocks)  # the script not loaded yet (NOSCRIPT): once
        moved = answers[len(answers) - len(clocks) :] if clocks else []
        return {f: int(now) for f, now in zip(clocks, moved, strict=True)}

    def peek(self, facility: str, names: Sequence[str]) -> list[tuple[bytes | None, bool]]:
        """(packed state, flagged as a dropout) of each ``field`` of the facility."""
        packed: list[bytes | None] = self.client.hmget(state_key(facility), list(names))  # type: ignore[assignment]
        flags: list[bytes | None] = self.client.hmget(missing_key(facility), list(names))  # type: ignore[assignment]
        return [(value, bool(flag)) for value, flag in zip(packed, flags, strict=True)]

    def flagged(self, sensors: Iterable[SensorKey]) -> set[SensorKey]:
        """The sensors among these with an open dropout."""
        by_facility: dict[str, list[SensorKey]] = defaultdict(list)
        for key in sensors:
            by_facility[key[0]].append(key)
        found: set[SensorKey] = set()
        for facility, keys in by_facility.items():
            values = self.client.hmget(missing_key(facility), [field(d, m) for _, d, m in keys])
            found |= {key for key, value in zip(keys, values, strict=True) if value}
        return found

    def flag(self, facility: str, names: Iterable[str]) -> None:
        mapping = dict.fromkeys(names, "1")
        if mapping:
            self.client.hset(missing_key(facility), mapping=mapping)  # type: ignore[arg-type]

    def unflag(self, sensors: Iterable[SensorKey]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for facility, device, metric in sensors:
                pipe.hdel(missing_key(facility), field(device, metric))
            pipe.execute()

    def advance_clock(self, facility: str, ts_us: int) -> int:
        """Move the facility's data clock forward to ``ts_us``; the clock as it now stands."""
        return int(self._advance(keys=[clock_key(facility)], args=[ts_us]))

    def advance_clocks(self, clocks: Mapping[str, int]) -> dict[str, int]:
        """``advance_clock`` for several facilities in one round trip."""
        if len(clocks) <= 1 or isinstance(self.client, RedisCluster):  # keys on other nodes
            return {f: self.advance_clock(f, ts) for f, ts in clocks.items()}
        with self.client.pipeline(transaction=False) as pipe:
            for facility, ts_us in clocks.items():
                self._advance(keys=[clock_key(facility)], args=[ts_us], client=pipe)
            return {f: int(now) for f, now in zip(clocks, pipe.execute(), strict=True)}

    def claim_sweep(self, facility: str, *, hold_ms: int) -> dict[str, bytes] | None:
        """The facility's unflagged states by field, if this caller may sweep it now (no other
        processor did within ``hold_ms``); else None."""
        claimed = self._claim_sweep(
            keys=[sweep_key(facility), state_key(facility), missing_key(facility)],
            args=[hold_ms],
        )
        if not claimed:
            return None
        raw, flagged = claimed
        flags = set(flagged[0::2])
        return {
            name.decode(): packed
            for name, packed in zip(raw[0::2], raw[1::2], strict=True)
            if name not in flags
        }

    def forget(self, facility: str) -> None:
        """Drop every detection key of a facility (an evaluation's scratch facility)."""
        for key in (
            state_key(facility),
            missing_key(facility),
            clock_key(facility),
            sweep_key(facility),
            f"ps:alerts:{facility}",
        ):
            self.client.delete(key)


def rollup_baselines(
    *, conn: psycopg.Connection, cutoffs: Mapping[int, int]
) -> list[tuple[int, int, float, float, float, int, int]]:
    """Per sensor, the hour of complete 1-minute rollups before its cutoff (epoch us):
    (sensor_id, minutes, mean, variance of minute means, mean within-minute variance,
    newest reading epoch us, readings). Sensors without rollups are absent."""
    ids = list(cutoffs)
    rows = conn.execute(
        """
        WITH cut AS (
            SELECT * FROM unnest(%s::int[], %s::bigint[]) AS c (sensor_id, before_us)
        ), recent AS (
            SELECT r.sensor_id, r.bucket, r.count, r.sum, r.sum_sq, r.last_ts,
                   max(r.bucket) OVER (PARTITION BY r.sensor_id) AS newest
            FROM rollup_1m r JOIN cut USING (sensor_id)
            WHERE r.bucket + interval '1 minute'
                  <= to_timestamp(cut.before_us / 1e6::double precision)
        )
        SELECT sensor_id, count(*), sum(sum) / sum(count),
               coalesce(var_pop(sum / count), 0),
               avg(greatest(sum_sq / count - (sum / count) ^ 2, 0)),
               (extract(epoch FROM max(last_ts)) * 1e6)::bigint,
               sum(count)
        FROM recent WHERE bucket > newest - interval '1 hour'
        GROUP BY sensor_id
        """,
        (ids, [cutoffs[i] for i in ids]),
    ).fetchall()
    return [
        (
            int(sid),
            int(minutes),
            float(mean),
            float(var_means),
            float(var_raw or 0.0),
            int(last),
            int(n),
        )
        for sid, minutes, mean, var_means, var_raw, last, n in rows
    ]


__all__ = [
    "DetectionStateStore",
    "clock_key",
    "field",
    "missing_key",
    "rollup_baselines",
    "split_field",
    "state_key",
    "sweep_key",
]
