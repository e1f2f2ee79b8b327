"""SQL of one processor batch: raw readings by binary COPY, rollup merges, dead letters and
counters, plus the per-session staging tables they use. Callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import psycopg
from psycopg import sql

from plantstream.model import to_epoch_us

DeadLetterRow = tuple[str, str, str | None, str, str, bytes]  # shard, seq, facility, code, why, raw
# sensor, ts, value, value_int, value_text, quality, quality_code: a repeat with another value
ConflictRow = tuple[int, object, float | None, int | None, str | None, int, int | None]


class ReadingCopy(Protocol):
    """One COPY of readings (``processor/writer.py`` ``CopyPart``): a binary buffer of
    ``columns`` or, for variable-width rows, the rows themselves with their types."""

    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def buffer(self) -> bytes: ...
    @property
    def rows(self) -> tuple[tuple[object, ...], ...]: ...
    @property
    def types(self) -> tuple[str, ...]: ...


_SESSION_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS _stage (LIKE readings) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _rollup_delta (LIKE rollup_1m) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _rollup_delta_1h (LIKE rollup_1h) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _rollup_delta_1d (LIKE rollup_1d) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _state_delta (
    sensor_id integer, bucket timestamptz, first_ts timestamptz, last_ts timestamptz,
    durations jsonb, first_text text, last_text text
) ON COMMIT DELETE ROWS;
"""

# a state signal's time in each state: merged before the plain merge moves first/last, in the
# same append / prepend / overlap (dirty) cases; a new bucket takes the delta's as it is.
# _STATE_LOCK first takes the row locks of every stored bucket either delta touches (the
# plain one and the time-in-state one) in (sensor, bucket) order (the sort is below the
# locking step): an UPDATE ... FROM locks in whatever order its join plan yields, and locking
# the state buckets before the plain merge's would put those first, so two processors merging
# overlapping buckets could each hold one the other waits for
_STATE_LOCK = """
SELECT 1 FROM {table} r JOIN (
    SELECT sensor_id, bucket FROM {delta} UNION SELECT sensor_id, bucket FROM _state_delta
) d ON r.sensor_id = d.sensor_id AND r.bucket = d.bucket
ORDER BY r.sensor_id, r.bucket FOR UPDATE OF r
"""
_STATE_MERGE = """
UPDATE {table} r SET
    durations = CASE
        WHEN d.first_ts > r.last_ts THEN ps_add_durations(
            ps_add_durations(r.durations, d.durations),
            jsonb_build_object(r.last_text, extract(epoch FROM d.first_ts - r.last_ts)))
        WHEN d.last_ts < r.first_ts THEN ps_add_durations(
            ps_add_durations(r.durations, d.durations),
            jsonb_build_object(d.last_text, extract(epoch FROM r.first_ts - d.last_ts)))
        ELSE r.durations END,
    first_text = CASE WHEN d.first_ts < r.first_ts THEN d.first_text ELSE r.first_text END,
    last_text = CASE WHEN d.last_ts >= r.last_ts THEN d.last_text ELSE r.last_text END
FROM _state_delta d WHERE r.sensor_id = d.sensor_id AND r.bucket = d.bucket
"""
_STATE_NEW = """
UPDATE {table} r SET durations = d.durations, first_text = d.first_text, last_text = d.last_text
FROM _state_delta d
WHERE r.sensor_id = d.sensor_id AND r.bucket = d.bucket AND r.durations IS NULL
"""
# A delta wholly after (or before) a stored bucket adds the one joint between them; one that
# overlaps it (late data between stored readings) marks it dirty, for the repair pass
# (store/rollup_repair.py) to recompute once, off the commit path. Every SET expression reads
# the stored row as it was.
_APPEND = "excluded.first_ts > r.last_ts"
_PREPEND = "excluded.last_ts < r.first_ts"
_WRAP = "(SELECT wrap FROM sensors WHERE id = r.sensor_id)"
_MERGE = f"""
INSERT INTO {{table}} AS r SELECT * FROM {{delta}} ORDER BY sensor_id, bucket
ON CONFLICT (sensor_id, bucket) DO UPDATE SET
    count = r.count + excluded.count,
    sum = r.sum + excluded.sum,
    min = least(r.min, excluded.min),
    max = greatest(r.max, excluded.max),
    sum_sq = r.sum_sq + excluded.sum_sq,
    first = CASE WHEN excluded.first_ts < r.first_ts THEN excluded.first ELSE r.first END,
    first_ts = least(r.first_ts, excluded.first_ts),
    last = CASE WHEN excluded.last_ts >= r.last_ts THEN excluded.last ELSE r.last END,
    last_ts = greatest(r.last_ts, excluded.last_ts),
    area = CASE
        WHEN {_APPEND} THEN r.area + excluded.area
            + r.last * extract(epoch FROM excluded.first_ts - r.last_ts)
        WHEN {_PREPEND} THEN r.area + excluded.area
            + excluded.last * extract(epoch FROM r.first_ts - excluded.last_ts)
        ELSE r.area END,
    increase = CASE
        WHEN r.kind <> 1 THEN r.increase + excluded.increase
        WHEN {_APPEND} THEN r.increase + excluded.increase
            + ps_increase(r.last, excluded.first, {_WRAP})
        WHEN {_PREPEND} THEN r.increase + excluded.increase
            + ps_increase(excluded.last, r.first, {_WRAP})
        ELSE r.increase END,
    dirty = r.dirty OR NOT ({_APPEND} OR {_PREPEND})
"""

ROLLUP_TABLES = (
    ("rollup_1m", "_rollup_delta", "interval '1 minute'"),
    ("rollup_1h", "_rollup_delta_1h", "interval '1 hour'"),
    ("rollup_1d", "_rollup_delta_1d", "interval '1 day'"),
)
_MERGES = [
    (
        delta,
        sql.SQL(_MERGE.format(table=table, delta=delta)),  # fixed names: no user input
        (
            sql.SQL(_STATE_LOCK.format(table=table, delta=delta)),
            sql.SQL(_STATE_MERGE.format(table=table)),
            sql.SQL(_STATE_NEW.format(table=table)),
        ),
    )
    for table, delta, _width in ROLLUP_TABLES
]
_DELTA_COLUMNS = sql.SQL(
    "sensor_id, bucket, count, sum, min, max, sum_sq, first_ts, first, last_ts, last, area, "
    "increase, kind, dirty"
)
StateDelta = tuple[int, object, object, object, str, str, str]


def create_session_tables(conn: psycopg.Connection) -> None:
    """Create this session's staging tables; the pool's ``configure`` runs it per connection."""
    conn.execute(_SESSION_TABLES)


def copy_parts(cur: psycopg.Cursor, table: str, parts: Sequence[ReadingCopy | bytes]) -> None:
    """COPY each part (``processor/writer.py`` ``CopyPart``, or a plain binary buffer) into
    ``table`` (``readings`` or a table like it)."""
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    types: tuple[str, ...]
    for part in parts:
        if isinstance(part, bytes):  # one binary buffer of the plain columns
            columns, buffer, rows, types = ("sensor_id", "ts", "value", "quality"), part, (), ()
        else:
            columns, buffer, rows, types = part.columns, part.buffer, part.rows, part.types
        statement = sql.SQL("COPY {} ({}) FROM STDIN BINARY").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with cur.copy(statement) as cp:
            if rows:
                cp.set_types(list(types))
                for row in rows:
                    cp.write_row(row)
            else:
                cp.write(buffer)


def copy_new_readings(cur: psycopg.Cursor, parts: Sequence[ReadingCopy | bytes] | bytes) -> bool:
    """COPY readings (binary, in-batch unique) straight into ``readings``.

    ``parts`` are the COPYs of one batch (or one buffer of plain doubles). Returns False,
    having written nothing, when one of them is stored already (a producer retry or a
    replay); the caller then uses ``insert_missing_readings``.
    """
    parts = [parts] if isinstance(parts, bytes) else parts
    try:
        # a savepoint: a duplicate of an earlier batch undoes only these COPYs
        with cur.connection.transaction():
            copy_parts(cur, "readings", parts)
        return True
    except psycopg.errors.UniqueViolation:
        return False


def insert_missing_readings(
    cur: psycopg.Cursor, parts: Sequence[ReadingCopy | bytes] | bytes
) -> tuple[set[tuple[int, int]], list[int]]:
    """Stage the readings and insert those not stored yet; return their (sensor, ts_us), and
    the sensor id of each conflict.

    A staged reading whose (sensor, time) is stored with another value is a conflict: it is
    kept in ``reading_conflicts`` for review (the stored one still wins).
    """
    parts = [parts] if isinstance(parts, bytes) else parts
    copy_parts(cur, "_stage", parts)
    cur.execute(
        "INSERT INTO reading_conflicts "
        "(sensor_id, ts, value, value_int, value_text, quality, quality_code) "
        "SELECT s.sensor_id, s.ts, s.value, s.value_int, s.value_text, s.quality, s.quality_code "
        "FROM _stage s JOIN readings r ON r.sensor_id = s.sensor_id AND r.ts = s.ts "
        "WHERE (r.value, r.value_int, r.value_text) "
        "IS DISTINCT FROM (s.value, s.value_int, s.value_text) RETURNING sensor_id"
    )
    conflicts = [int(row[0]) for row in cur.fetchall()]
    cur.execute(
        "INSERT INTO readings SELECT * FROM _stage ON CONFLICT DO NOTHING RETURNING sensor_id, ts"
    )
    return {(sensor_id, to_epoch_us(ts)) for sensor_id, ts in cur.fetchall()}, conflicts


def insert_conflicts(cur: psycopg.Cursor, rows: Iterable[ConflictRow]) -> None:
    """Keep in-batch conflicts (a repeat of a reading's identity with another value)."""
    with cur.copy(
        "COPY reading_conflicts "
        "(sensor_id, ts, value, value_int, value_text, quality, quality_code) FROM STDIN"
    ) as cp:
        for row in rows:
            cp.write_row(row)


def merge_rollups(
    cur: psycopg.Cursor,
    buffers: Sequence[bytes],
    states: Sequence[Sequence[StateDelta]] = ((), (), ()),
) -> None:
    """Merge the 1-minute, 1-hour and 1-day deltas (binary COPYs of rollup rows,
    ``processor/rollups.py``), and the time-in-state deltas of state signals, into their
    tables. A bucket a delta overlaps is only marked dirty here (O(batch)); its area,
    increase and durations are recomputed by ``store/rollup_repair.py``.

    Row locks are taken in (sensor, bucket) order, table by table, whatever order the deltas
    come in, so overlapping merges of two processors wait for each other, never deadlock."""
    for (delta, merge, state_sql), buffer, state_rows in zip(_MERGES, buffers, states, strict=True):
        with cur.copy(
            sql.SQL("COPY {} ({}) FROM STDIN BINARY").format(sql.Identifier(delta), _DELTA_COLUMNS)
        ) as cp:
            cp.write(buffer)
        if state_rows:
            cur.execute("DELETE FROM _state_delta")
            with cur.copy(
                "COPY _state_delta (sensor_id, bucket, first_ts, last_ts, durations, "
                "first_text, last_text) FROM STDIN"
            ) as cp:
                for state_row in state_rows:
                    cp.write_row(state_row)
            cur.execute(state_sql[0])  # the row locks of both deltas, in key order
            cur.execute(state_sql[1])
        cur.execute(merge)
        if state_rows:
            cur.execute(state_sql[2])


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
