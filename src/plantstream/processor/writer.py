"""One PostgreSQL transaction per batch: raw rows, rollups, dead letters, counters, checkpoint.

Rows are sorted by (sensor, time) and de-duplicated in memory (the first in stream order
wins), then binary-COPYed straight into ``readings``. Only a duplicate of an earlier batch
(a producer retry, a replay) makes that COPY fail; the fallback stages the rows and inserts
with ``ON CONFLICT DO NOTHING``. Rollups are computed from exactly the rows newly stored.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from plantstream.errors import LeaseLostError
from plantstream.model import to_epoch_us
from plantstream.processor.rows import Columns, RowBatch

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's zero for timestamps
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_MINUTE_US = 60_000_000


def _copy_dtype(*columns: tuple[str, str]) -> np.dtype:
    """A packed big-endian record: field count, then (length, value) per column."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for name, kind in columns:
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


_READING_ROW = _copy_dtype(
    ("sensor_id", ">i4"), ("ts", ">i8"), ("value", ">f8"), ("quality", ">i2")
)
_ROLLUP_ROW = _copy_dtype(
    ("sensor_id", ">i4"),
    ("bucket", ">i8"),
    ("count", ">i8"),
    ("sum", ">f8"),
    ("min", ">f8"),
    ("max", ">f8"),
    ("sum_sq", ">f8"),
    ("first_ts", ">i8"),
    ("first", ">f8"),
    ("last_ts", ">i8"),
    ("last", ">f8"),
)

_TEMP_TABLES = """
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


def prepare_connection(conn: psycopg.Connection) -> None:
    """Create this session's staging tables (once per connection)."""
    conn.execute(_TEMP_TABLES)


def copy_buffer(dtype: np.dtype, **columns: npt.ArrayLike) -> bytes:
    """A complete binary COPY stream for the given columns (built without a Python loop)."""
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    rows = np.empty(n, dtype=dtype)
    rows["n"] = len(columns)
    for name, values in columns.items():
        rows[f"{name}_len"] = dtype[name].itemsize
        rows[name] = values
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def sort_and_dedupe(rows: Columns) -> tuple[Columns, int]:
    """Rows sorted by (sensor, time), keeping the first of equal (sensor, time) in stream order.

    Returns the rows kept and how many duplicates were dropped.
    """
    order = np.lexsort((np.arange(len(rows)), rows.ts_us, rows.sensor_id))
    rows = rows.take(order)
    if len(rows) < 2:
        return rows, 0
    repeat = (rows.sensor_id[1:] == rows.sensor_id[:-1]) & (rows.ts_us[1:] == rows.ts_us[:-1])
    if not repeat.any():
        return rows, 0
    keep = np.concatenate(([True], ~repeat))
    return rows.take(keep), int(np.count_nonzero(repeat))


def rollup_buffer(rows: Columns) -> bytes:
    """Per (sensor, minute) of sorted rows: count, sum, min, max, sum of squares, first, last."""
    bucket = rows.ts_us - rows.ts_us % _MINUTE_US
    change = np.empty(len(rows), dtype=bool)
    change[0] = True
    change[1:] = (rows.sensor_id[1:] != rows.sensor_id[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(rows)) - 1
    values = rows.value
    return copy_buffer(
        _ROLLUP_ROW,
        sensor_id=rows.sensor_id[starts],
        bucket=bucket[starts] - _PG_EPOCH_US,
        count=ends - starts + 1,
        sum=np.add.reduceat(values, starts),
        min=np.minimum.reduceat(values, starts),
        max=np.maximum.reduceat(values, starts),
        sum_sq=np.add.reduceat(values * values, starts),
        first_ts=rows.ts_us[starts] - _PG_EPOCH_US,
        first=values[starts],
        last_ts=rows.ts_us[ends] - _PG_EPOCH_US,
        last=values[ends],
    )


@dataclass(frozen=True, slots=True)
class CopyReady:
    """A batch's rows sorted by (sensor, time), de-duplicated within the batch and encoded
    for COPY: the CPU half of a commit, which the processor does on its prefetch thread while
    the previous batch commits."""

    unique: Columns
    readings: bytes
    rollups: bytes


def copy_ready(rows: Columns) -> CopyReady:
    unique, _ = sort_and_dedupe(rows)
    if not len(unique):
        return CopyReady(unique, b"", b"")
    return CopyReady(unique, readings_copy_buffer(unique), rollup_buffer(unique))


def readings_copy_buffer(rows: Columns) -> bytes:
    return copy_buffer(
        _READING_ROW,
        sensor_id=rows.sensor_id,
        ts=rows.ts_us - _PG_EPOCH_US,
        value=rows.value,
        quality=rows.quality,
    )


def _claim_checkpoint(
    conn: psycopg.Connection,
    *,
    stream: str,
    shard_id: str,
    owner: str,
    token: int,
    previous: str | None,
    checkpoint: str,
    finished: bool,
    lease_seconds: float,
) -> None:
    # first statement of the transaction: takes the lease row's lock, so a processor that
    # steals the lease waits for this commit and then resumes after this checkpoint
    row = conn.execute(
        "UPDATE shard_leases SET checkpoint = %s, finished = %s, updated_at = now(), "
        "expires_at = now() + make_interval(secs => %s) "
        "WHERE stream = %s AND shard_id = %s AND owner = %s AND token = %s "
        "AND checkpoint IS NOT DISTINCT FROM %s RETURNING 1",
        (checkpoint, finished, lease_seconds, stream, shard_id, owner, token, previous),
    ).fetchone()
    if row is None:
        raise LeaseLostError(f"lease on {shard_id} was lost; batch not committed")


def _store_readings(cur: psycopg.Cursor, ready: CopyReady) -> Columns:
    """Insert sorted, in-batch-unique rows; return those that were new."""
    rows, buffer = ready.unique, ready.readings
    try:
        # a savepoint: a duplicate of an earlier batch undoes only this COPY
        with (
            cur.connection.transaction(),
            cur.copy("COPY readings (sensor_id, ts, value, quality) FROM STDIN BINARY") as cp,
        ):
            cp.write(buffer)
        return rows
    except psycopg.errors.UniqueViolation:
        pass
    with cur.copy("COPY _stage (sensor_id, ts, value, quality) FROM STDIN BINARY") as cp:
        cp.write(buffer)
    cur.execute(
        "INSERT INTO readings SELECT sensor_id, ts, value, quality FROM _stage "
        "ON CONFLICT DO NOTHING RETURNING sensor_id, ts"
    )
    new = {(sensor_id, to_epoch_us(ts)) for sensor_id, ts in cur.fetchall()}
    keep = np.fromiter(
        ((s, t) in new for s, t in zip(rows.sensor_id.tolist(), rows.ts_us.tolist(), strict=True)),
        dtype=bool,
        count=len(rows),
    )
    return rows.take(keep)


def _store_rollups(cur: psycopg.Cursor, rows: Columns, buffer: bytes | None) -> None:
    if not len(rows):
        return
    with cur.copy("COPY _rollup_delta FROM STDIN BINARY") as cp:
        cp.write(buffer if buffer is not None else rollup_buffer(rows))
    cur.execute(_MERGE_1M)
    cur.execute(_MERGE_1H)


def _store_dead_letters(cur: psycopg.Cursor, stream: str, batch: RowBatch) -> None:
    if not batch.dead_letters:
        return
    with cur.copy(
        "COPY dead_letters (stream, shard_id, sequence, facility, reason_code, reason, payload) "
        "FROM STDIN"
    ) as cp:
        for d in batch.dead_letters:
            cp.write_row(
                (stream, d.shard_id, d.sequence, d.facility, d.reason_code, d.reason, d.payload)
            )


def _store_counters(cur: psycopg.Cursor, counters: Counter[tuple[str, str]]) -> None:
    if not counters:
        return
    keys = sorted(counters)  # a fixed order avoids deadlocks between processors
    cur.execute(
        "INSERT INTO processor_counters AS c (facility, counter, value) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
        "ON CONFLICT (facility, counter) DO UPDATE SET value = c.value + excluded.value",
        ([k[0] for k in keys], [k[1] for k in keys], [counters[k] for k in keys]),
    )


def commit_batch(
    conn: psycopg.Connection,
    batch: RowBatch,
    *,
    stream: str,
    shard_id: str,
    owner: str,
    token: int,
    previous: str | None,
    checkpoint: str,
    finished: bool = False,
    lease_seconds: float = 10.0,
    ready: CopyReady | None = None,
) -> tuple[Columns, Counter[tuple[str, str]]]:
    """Write ``batch`` and move the shard's checkpoint to ``checkpoint``, atomically.

    Raises ``LeaseLostError`` (and writes nothing) when the lease is no longer ours. Returns
    the rows newly stored, sorted by (sensor, time), and the counters committed (the batch's
    own plus ``stored`` and ``duplicate``). ``ready`` is ``copy_ready(batch.rows)`` if the
    caller made it already.
    """
    counters = Counter(batch.counters)
    ready = ready if ready is not None else copy_ready(batch.rows)
    with conn.transaction(), conn.cursor() as cur:
        _claim_checkpoint(
            conn,
            stream=stream,
            shard_id=shard_id,
            owner=owner,
            token=token,
            previous=previous,
            checkpoint=checkpoint,
            finished=finished,
            lease_seconds=lease_seconds,
        )
        stored = _store_readings(cur, ready) if len(ready.unique) else ready.unique
        # the prepared rollups hold when every row was new, the usual case
        _store_rollups(cur, stored, ready.rollups if stored is ready.unique else None)
        _store_dead_letters(cur, stream, batch)
        accepted = batch.count_by_facility(batch.rows.facility)
        kept = batch.count_by_facility(stored.facility)
        for facility, n in accepted.items():
            if kept.get(facility):
                counters[(facility, "stored")] += kept[facility]
            if n - kept.get(facility, 0):
                counters[(facility, "duplicate")] += n - kept.get(facility, 0)
        _store_counters(cur, counters)
    return stored, counters
