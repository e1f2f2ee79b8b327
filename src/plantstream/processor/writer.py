"""One PostgreSQL transaction per batch: raw rows, rollups, dead letters, counters, checkpoint.

The fast path binary-COPYs the rows straight into ``readings``; only when that meets a
duplicate (a producer retry, a replay) does it fall back to staging + ``ON CONFLICT DO
NOTHING``, so the rollups always count exactly the rows that were newly stored.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from plantstream.errors import LeaseLostError
from plantstream.model import to_epoch_us
from plantstream.processor.rows import RowBatch

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's zero for timestamps
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_READING_ROW = struct.Struct(">hiiiqidih")  # 4 fields: int4 sensor, int8 ts, float8, int2
# the 11 rollup columns: sensor, bucket, count, sum, min, max, sum_sq, first(_ts), last(_ts)
_ROLLUP_ROW = struct.Struct(">h" + "ii" + "iq" * 2 + "id" * 4 + "iq" + "id" + "iq" + "id")
_MINUTE_US = 60_000_000

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


@dataclass(slots=True)
class StoredRows:
    """The rows this batch newly stored (duplicates excluded), column-wise."""

    sensor_ids: list[int]
    ts_us: list[int]
    values: list[float]
    qualities: list[int]
    facilities: list[str]
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)


def prepare_connection(conn: psycopg.Connection) -> None:
    """Create this session's staging tables (once per connection)."""
    conn.execute(_TEMP_TABLES)


def _readings_copy_buffer(
    sensor_ids: list[int], ts_us: list[int], values: list[float], qualities: list[int]
) -> bytes:
    pack = _READING_ROW.pack
    body = b"".join(
        [
            pack(4, 4, s, 8, t - _PG_EPOCH_US, 8, v, 2, q)
            for s, t, v, q in zip(sensor_ids, ts_us, values, qualities, strict=True)
        ]
    )
    return _COPY_HEADER + body + _COPY_TRAILER


def _rollup_rows(rows: StoredRows) -> bytes:
    """Per (sensor, minute): count, sum, min, max, sum of squares, first and last."""
    buckets: dict[tuple[int, int], list[float]] = {}
    get = buckets.get
    for s, t, v in zip(rows.sensor_ids, rows.ts_us, rows.values, strict=True):
        key = (s, t - t % _MINUTE_US)
        acc = get(key)
        if acc is None:
            buckets[key] = [1, v, v, v, v * v, t, v, t, v]
            continue
        acc[0] += 1
        acc[1] += v
        if v < acc[2]:
            acc[2] = v
        if v > acc[3]:
            acc[3] = v
        acc[4] += v * v
        if t < acc[5]:
            acc[5] = t
            acc[6] = v
        if t >= acc[7]:
            acc[7] = t
            acc[8] = v
    pack = _ROLLUP_ROW.pack
    body = b"".join(
        [
            pack(
                11,
                4,
                s,
                8,
                b - _PG_EPOCH_US,
                8,
                int(a[0]),
                8,
                a[1],
                8,
                a[2],
                8,
                a[3],
                8,
                a[4],
                8,
                int(a[5]) - _PG_EPOCH_US,
                8,
                a[6],
                8,
                int(a[7]) - _PG_EPOCH_US,
                8,
                a[8],
            )
            for (s, b), a in buckets.items()
        ]
    )
    return _COPY_HEADER + body + _COPY_TRAILER


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


def _store_readings(cur: psycopg.Cursor, batch: RowBatch) -> StoredRows:
    buffer = _readings_copy_buffer(batch.sensor_ids, batch.ts_us, batch.values, batch.qualities)
    try:
        # a savepoint: a duplicate undoes only the COPY
        with (
            cur.connection.transaction(),
            cur.copy("COPY readings (sensor_id, ts, value, quality) FROM STDIN BINARY") as cp,
        ):
            cp.write(buffer)
        return StoredRows(
            batch.sensor_ids, batch.ts_us, batch.values, batch.qualities, batch.facilities
        )
    except psycopg.errors.UniqueViolation:
        pass
    with cur.copy("COPY _stage (sensor_id, ts, value, quality) FROM STDIN BINARY") as cp:
        cp.write(buffer)
    # ctid keeps the stream's order, so the first of two equal readings wins
    cur.execute(
        "INSERT INTO readings SELECT sensor_id, ts, value, quality FROM _stage ORDER BY ctid "
        "ON CONFLICT DO NOTHING RETURNING sensor_id, ts"
    )
    new = {(sensor_id, to_epoch_us(ts)) for sensor_id, ts in cur.fetchall()}
    keep = []
    for i, key in enumerate(zip(batch.sensor_ids, batch.ts_us, strict=True)):
        if key in new:
            new.discard(key)  # a second copy inside the batch is a duplicate too
            keep.append(i)
    return StoredRows(
        [batch.sensor_ids[i] for i in keep],
        [batch.ts_us[i] for i in keep],
        [batch.values[i] for i in keep],
        [batch.qualities[i] for i in keep],
        [batch.facilities[i] for i in keep],
    )


def _store_rollups(cur: psycopg.Cursor, rows: StoredRows) -> None:
    if not rows.sensor_ids:
        return
    with cur.copy("COPY _rollup_delta FROM STDIN BINARY") as cp:
        cp.write(_rollup_rows(rows))
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
) -> StoredRows:
    """Write ``batch`` and move the shard's checkpoint to ``checkpoint``, atomically.

    Raises ``LeaseLostError`` (and writes nothing) when the lease is no longer ours. Returns
    the rows newly stored, with the counters committed (the batch's own plus ``stored`` and
    ``duplicate``).
    """
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
        stored = _store_readings(cur, batch) if len(batch) else StoredRows([], [], [], [], [])
        _store_rollups(cur, stored)
        _store_dead_letters(cur, stream, batch)
        counters = Counter(batch.counters)
        for facility in stored.facilities:
            counters[(facility, "stored")] += 1
        if len(stored.facilities) != len(batch):
            for facility in batch.facilities:
                counters[(facility, "duplicate")] += 1
            for facility in stored.facilities:
                counters[(facility, "duplicate")] -= 1
        stored.counters = +counters
        _store_counters(cur, stored.counters)
    return stored
