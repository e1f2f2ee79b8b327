"""SQL of one processor batch: raw readings by binary COPY, rollup merges, dead letters and
counters, plus the per-session staging tables they use. Callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psycopg
from psycopg import sql

from plantstream.model import to_epoch_us

DeadLetterRow = tuple[str, str, str | None, str, str, bytes]  # shard, seq, facility, code, why, raw

_SESSION_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS _stage (LIKE readings) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _rollup_delta (LIKE rollup_1m) ON COMMIT DELETE ROWS;
"""

_MERGE = """
INSERT INTO {table} AS r SELECT {select}
ON CONFLICT (sensor_id, bucket) DO UPDATE SET
    count = r.count + excluded.count,
    sum = r.sum + excluded.sum,
    min = least(r.min, excluded.min),
    max = greatest(r.max, excluded.max),
    sum_sq = r.sum_sq + excluded.sum_sq,
    first = CASE WHEN excluded.first_ts < r.first_ts THEN excluded.first ELSE r.first END,
    first_ts = least(r.first_ts, excluded.first_ts),
    last = CASE WHEN excluded.last_ts >= r.last_ts THEN excluded.last ELSE r.last END,
    last_ts = greatest(r.last_ts, excluded.last_ts)
"""
_MERGE_1M = sql.SQL(_MERGE).format(
    table=sql.Identifier("rollup_1m"), select=sql.SQL("* FROM _rollup_delta")
)
_MERGE_1H = sql.SQL(_MERGE).format(
    table=sql.Identifier("rollup_1h"),
    select=sql.SQL(
        "sensor_id, date_bin('1 hour', bucket, timestamptz '2000-01-01 00:00:00+00'), "
        "sum(count), sum(sum), min(min), max(max), sum(sum_sq), "
        "min(first_ts), (array_agg(first ORDER BY first_ts))[1], "
        "max(last_ts), (array_agg(last ORDER BY last_ts DESC))[1] "
        "FROM _rollup_delta GROUP BY 1, 2"
    ),
)


def create_session_tables(conn: psycopg.Connection) -> None:
    """Create this session's staging tables; the pool's ``configure`` runs it per connection."""
    conn.execute(_SESSION_TABLES)


def copy_new_readings(cur: psycopg.Cursor, buffer: bytes) -> bool:
    """COPY readings (binary, in-batch unique) straight into ``readings``.

    Returns False, having written nothing, when one of them is stored already (a producer
    retry or a replay); the caller then uses ``insert_missing_readings``.
    """
    try:
        # a savepoint: a duplicate of an earlier batch undoes only this COPY
        with (
            cur.connection.transaction(),
            cur.copy("COPY readings (sensor_id, ts, value, quality) FROM STDIN BINARY") as cp,
        ):
            cp.write(buffer)
        return True
    except psycopg.errors.UniqueViolation:
        return False


def insert_missing_readings(cur: psycopg.Cursor, buffer: bytes) -> set[tuple[int, int]]:
    """Stage the readings and insert those not stored yet; return their (sensor, ts_us)."""
    with cur.copy("COPY _stage (sensor_id, ts, value, quality) FROM STDIN BINARY") as cp:
        cp.write(buffer)
    cur.execute(
        "INSERT INTO readings SELECT sensor_id, ts, value, quality FROM _stage "
        "ON CONFLICT DO NOTHING RETURNING sensor_id, ts"
    )
    return {(sensor_id, to_epoch_us(ts)) for sensor_id, ts in cur.fetchall()}


def merge_rollups(cur: psycopg.Cursor, buffer: bytes) -> None:
    """Add 1-minute deltas (binary COPY of ``rollup_1m`` rows) into both rollup tables."""
    with cur.copy("COPY _rollup_delta FROM STDIN BINARY") as cp:
        cp.write(buffer)
    cur.execute(_MERGE_1M)
    cur.execute(_MERGE_1H)


def insert_dead_letters(
    cur: psycopg.Cursor, *, stream: str, letters: Iterable[DeadLetterRow]
) -> None:
    with cur.copy(
        "COPY dead_letters (stream, shard_id, sequence, facility, reason_code, reason, payload) "
        "FROM STDIN"
    ) as cp:
        for letter in letters:
            cp.write_row((stream, *letter))


def add_counters(cur: psycopg.Cursor, counters: Mapping[tuple[str, str], int]) -> None:
    """Add to ``processor_counters`` (per facility and counter name)."""
    if not counters:
        return
    keys = sorted(counters)  # a fixed order avoids deadlocks between processors
    cur.execute(
        "INSERT INTO processor_counters AS c (facility, counter, value) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
        "ON CONFLICT (facility, counter) DO UPDATE SET value = c.value + excluded.value",
        ([k[0] for k in keys], [k[1] for k in keys], [counters[k] for k in keys]),
    )
