"""Repair of rollup buckets that late data made dirty: each dirty bucket is recomputed once,
however many late batches touched it, off the commit path (``processor/repair.py`` runs it).

A commit only marks a bucket ``dirty`` when its delta overlaps what the bucket holds (late
data between stored readings; ``store/batches.py``): count, sum, min, max, first and last stay
exact through every merge, only ``area``, ``increase`` and a state's ``durations`` wait for
this repair. One pass, in one transaction, takes at most ``limit`` dirty buckets per width,
oldest first, and chains the widths: 1-minute buckets from the raw readings they cover,
1-hour buckets from their (clean) 1-minute buckets, 1-day buckets from their (clean) 1-hour
buckets, so no pass reads more than a minute of raw readings per bucket.

Concurrency: a pass first locks its buckets (``FOR UPDATE SKIP LOCKED``, never waiting, so a
pass cannot deadlock with a commit), then recomputes them in a later statement, whose
snapshot therefore holds every commit that touched them before the lock; a commit that
touches them later waits for the lock and merges its delta into the repaired row (marking it
dirty again if it overlaps). A coarser bucket is taken only when none of its finer buckets
is dirty. A bucket whose raw readings retention dropped gets ``area`` NULL (unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

_PICK = """
SELECT sensor_id, bucket, count FROM {table} r WHERE dirty {clean_below}
ORDER BY bucket LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
_CLEAN_BELOW = """
AND NOT EXISTS (SELECT 1 FROM {finer} f WHERE f.dirty AND f.sensor_id = r.sensor_id
                AND f.bucket >= r.bucket AND f.bucket < r.bucket + {width})
"""
_PICKED = (
    "picked AS (SELECT * FROM unnest(%(sensors)s::int[], %(buckets)s::timestamptz[]) "
    "AS p (sensor_id, bucket))"
)

# 1 minute from raw: the step function's integral and a counter's increase between readings
_FROM_RAW = f"""
WITH {_PICKED}, raw AS (
    SELECT p.sensor_id, p.bucket, x.ts, x.v,
           lead(x.ts) OVER w AS next_ts, lead(x.v) OVER w AS next_v
    FROM picked p CROSS JOIN LATERAL (
        SELECT ts, coalesce(value_int::double precision, value, 0) AS v FROM readings
        WHERE sensor_id = p.sensor_id AND ts >= p.bucket AND ts < p.bucket + {{width}}
    ) x
    WINDOW w AS (PARTITION BY p.sensor_id, p.bucket ORDER BY x.ts)
), sums AS (
    SELECT raw.sensor_id, raw.bucket,
           coalesce(sum(v * extract(epoch FROM next_ts - ts)), 0) AS area,
           coalesce(sum(CASE WHEN s.kind = 'counter' THEN ps_increase(v, next_v, s.wrap) END), 0)
               AS increase
    FROM raw JOIN sensors s ON s.id = raw.sensor_id GROUP BY 1, 2
)
UPDATE {{table}} r SET area = sums.area, increase = coalesce(sums.increase, 0), dirty = false
FROM picked p LEFT JOIN sums USING (sensor_id, bucket)
WHERE r.sensor_id = p.sensor_id AND r.bucket = p.bucket
"""
_STATES_FROM_RAW = f"""
WITH {_PICKED}, raw AS (
    SELECT p.sensor_id, p.bucket, x.ts, x.label, lead(x.ts) OVER w AS next_ts
    FROM picked p JOIN {{table}} r USING (sensor_id, bucket) CROSS JOIN LATERAL (
        SELECT ts, coalesce(value_text, CASE WHEN value <> 0 THEN 'true' ELSE 'false' END)
            AS label
        FROM readings
        WHERE sensor_id = p.sensor_id AND ts >= p.bucket AND ts < p.bucket + {{width}}
    ) x
    WHERE r.kind = 2
    WINDOW w AS (PARTITION BY p.sensor_id, p.bucket ORDER BY x.ts)
), spans AS (
    SELECT sensor_id, bucket, jsonb_object_agg(label, seconds) AS durations FROM (
        SELECT sensor_id, bucket, label, sum(extract(epoch FROM next_ts - ts)) AS seconds
        FROM raw WHERE next_ts IS NOT NULL GROUP BY 1, 2, 3
    ) x GROUP BY 1, 2
), ends AS (
    SELECT sensor_id, bucket, (array_agg(label ORDER BY ts))[1] AS first_text,
           (array_agg(label ORDER BY ts DESC))[1] AS last_text
    FROM raw GROUP BY 1, 2
)
UPDATE {{table}} r SET first_text = ends.first_text, last_text = ends.last_text,
    durations = coalesce(spans.durations, '{{{{}}}}'::jsonb)
FROM ends LEFT JOIN spans USING (sensor_id, bucket)
WHERE r.sensor_id = ends.sensor_id AND r.bucket = ends.bucket
"""

# 1 hour from 1 minute, 1 day from 1 hour: each part's own sums plus the joint between two
# consecutive parts (the earlier's last value held until the later's first reading)
_FROM_FINER = f"""
WITH {_PICKED}, parts AS (
    SELECT p.sensor_id, p.bucket, m.kind, m.first, m.first_ts, m.area, m.increase,
           lag(m.last) OVER w AS prev_last, lag(m.last_ts) OVER w AS prev_last_ts
    FROM picked p JOIN {{finer}} m
      ON m.sensor_id = p.sensor_id AND m.bucket >= p.bucket AND m.bucket < p.bucket + {{width}}
    WINDOW w AS (PARTITION BY p.sensor_id, p.bucket ORDER BY m.bucket)
), sums AS (
    SELECT q.sensor_id, q.bucket,
           sum(q.area + coalesce(q.prev_last * extract(epoch FROM q.first_ts - q.prev_last_ts), 0))
               AS area,
           sum(q.increase + CASE WHEN q.kind = 1 AND q.prev_last IS NOT NULL
                                 THEN ps_increase(q.prev_last, q.first, s.wrap) ELSE 0 END)
               AS increase
    FROM parts q JOIN sensors s ON s.id = q.sensor_id GROUP BY 1, 2
)
UPDATE {{table}} r SET area = sums.area, increase = coalesce(sums.increase, 0), dirty = false
FROM picked p LEFT JOIN sums USING (sensor_id, bucket)
WHERE r.sensor_id = p.sensor_id AND r.bucket = p.bucket
"""
_STATES_FROM_FINER = f"""
WITH {_PICKED}, parts AS (
    SELECT p.sensor_id, p.bucket, m.bucket AS part, m.durations, m.first_text, m.last_text,
           m.first_ts, lag(m.last_text) OVER w AS prev_text, lag(m.last_ts) OVER w AS prev_ts
    FROM picked p JOIN {{table}} r USING (sensor_id, bucket) JOIN {{finer}} m
      ON m.sensor_id = p.sensor_id AND m.bucket >= p.bucket AND m.bucket < p.bucket + {{width}}
    WHERE r.kind = 2
    WINDOW w AS (PARTITION BY p.sensor_id, p.bucket ORDER BY m.bucket)
), spans AS (
    SELECT sensor_id, bucket, e.key AS label, e.value::double precision AS seconds
    FROM parts CROSS JOIN LATERAL jsonb_each_text(coalesce(parts.durations, '{{{{}}}}')) e
    UNION ALL
    SELECT sensor_id, bucket, prev_text, extract(epoch FROM first_ts - prev_ts)
    FROM parts WHERE prev_text IS NOT NULL
), totals AS (
    SELECT sensor_id, bucket, jsonb_object_agg(label, seconds) AS durations FROM (
        SELECT sensor_id, bucket, label, sum(seconds) AS seconds FROM spans GROUP BY 1, 2, 3
    ) x GROUP BY 1, 2
), ends AS (
    SELECT sensor_id, bucket, (array_agg(first_text ORDER BY part))[1] AS first_text,
           (array_agg(last_text ORDER BY part DESC))[1] AS last_text
    FROM parts GROUP BY 1, 2
)
UPDATE {{table}} r SET first_text = ends.first_text, last_text = ends.last_text,
    durations = coalesce(totals.durations, '{{{{}}}}'::jsonb)
FROM ends LEFT JOIN totals USING (sensor_id, bucket)
WHERE r.sensor_id = ends.sensor_id AND r.bucket = ends.bucket
"""

# (table, the finer table it is rebuilt from or None for raw, bucket width)
_LEVELS = (
    ("rollup_1m", None, "interval '1 minute'"),
    ("rollup_1h", "rollup_1m", "interval '1 hour'"),
    ("rollup_1d", "rollup_1h", "interval '1 day'"),
)


def _statements(table: str, finer: str | None, width: str) -> tuple[sql.SQL, sql.SQL, sql.SQL]:
    names = {"table": table, "finer": finer or "", "width": width}
    clean_below = _CLEAN_BELOW.format(**names) if finer else ""
    pick = _PICK.format(table=table, clean_below=clean_below)
    values, states = (_FROM_FINER, _STATES_FROM_FINER) if finer else (_FROM_RAW, _STATES_FROM_RAW)
    # fixed table names and widths only: no user input reaches these strings
    return sql.SQL(pick), sql.SQL(values.format(**names)), sql.SQL(states.format(**names))


_STATEMENTS = tuple(_statements(*level) for level in _LEVELS)


@dataclass(frozen=True, slots=True)
class RepairPass:
    """What one pass repaired per width (1 m, 1 h, 1 d); ``full`` when some width reached its
    bound (more dirty buckets may wait: run another pass soon)."""

    repaired: tuple[int, int, int]
    full: bool


def repair_rollups(
    conn: psycopg.Connection, *, limit: int = 500, max_rows: int = 200_000
) -> RepairPass:
    """One bounded pass, in one transaction: recompute up to ``limit`` dirty buckets per
    width, and 1-minute buckets covering at most ``max_rows`` raw readings together (always
    at least one bucket, so a pass makes progress whatever a bucket holds)."""
    if limit < 1 or max_rows < 1:
        raise ValueError("limit and max_rows must be at least 1")
    counts: list[int] = []
    cut = False
    with conn.transaction(), conn.cursor() as cur:
        for level, (pick, values, states) in enumerate(_STATEMENTS):
            picked = cur.execute(pick, {"limit": limit}).fetchall()
            if level == 0:  # raw readings are read: bound them (a 1 kHz sensor's minute is 60k)
                picked, cut = _within(picked, max_rows)
            counts.append(len(picked))
            if not picked:
                continue
            params = {"sensors": [p[0] for p in picked], "buckets": [p[1] for p in picked]}
            cur.execute(values, params)
            cur.execute(states, params)
    repaired = (counts[0], counts[1], counts[2])
    return RepairPass(repaired, cut or any(n >= limit for n in repaired))


def _within(picked: list[tuple[int, object, int]], max_rows: int) -> tuple[list[Any], bool]:
    """The first buckets covering at most ``max_rows`` readings (at least one), and whether
    some were left (they stay dirty: locked only until this pass commits)."""
    total = 0
    for i, row in enumerate(picked):
        total += int(row[2])
        if total > max_rows and i:
            return picked[:i], True
    return picked, False


def dirty_buckets(conn: psycopg.Connection) -> tuple[int, int, int]:
    """How many buckets per width (1 m, 1 h, 1 d) wait for repair."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM rollup_1m WHERE dirty), "
        "(SELECT count(*) FROM rollup_1h WHERE dirty), "
        "(SELECT count(*) FROM rollup_1d WHERE dirty)"
    ).fetchone() or (0, 0, 0)
    return (int(row[0]), int(row[1]), int(row[2]))
