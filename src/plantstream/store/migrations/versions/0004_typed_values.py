"""Typed values: int64 and text beside the double, the source's quality code, sensor types,
conflicts kept for review, and rollups right for plant data (1-day buckets; the time-weighted
area and a counter's increase per bucket).

Revision ID: 0004
Revises: 0003

Nullable columns without a default are added as catalog changes only (no table rewrite), so
the upgrade is quick on a large ``readings`` table and loses nothing: every existing row is a
double and stays as it was. ``production_count``, a counter in the default catalog, becomes an
int64 counter sensor; its old rows read back as integers from ``value`` (they are integral).

The rollups gain ``area``, ``increase``, ``kind`` and ``dirty``; ``area`` and ``increase`` of
the existing buckets are computed from the raw readings they cover, and ``rollup_1d`` is built
from ``rollup_1h``. Where raw readings were dropped by retention already, ``area`` stays NULL
(unknown) and the series falls back to the bucket's plain mean there.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE sensors
    ADD COLUMN value_type text NOT NULL DEFAULT 'double'
        CHECK (value_type IN ('double', 'int64', 'bool', 'string', 'state')),
    ADD COLUMN kind text NOT NULL DEFAULT 'gauge' CHECK (kind IN ('gauge', 'counter', 'state')),
    ADD COLUMN wrap numeric;
UPDATE sensors SET value_type = 'int64', kind = 'counter' WHERE metric = 'production_count';

-- a double in value; an int64 exactly in value_int (value holds it as a float for charts and
-- detection); a string or state in value_text (value is NULL); a bool as 0/1 in value
ALTER TABLE readings
    ALTER COLUMN value DROP NOT NULL,
    ADD COLUMN value_int bigint,
    ADD COLUMN value_text text,
    ADD COLUMN quality_code bigint;

-- a repeat of a stored (sensor, ts) with another value: the first write wins, this is kept
CREATE TABLE reading_conflicts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id    integer     NOT NULL REFERENCES sensors (id),
    ts           timestamptz NOT NULL,
    value        double precision,
    value_int    bigint,
    value_text   text,
    quality      smallint    NOT NULL,
    quality_code bigint,
    seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reading_conflicts_sensor ON reading_conflicts (sensor_id, ts);

-- a counter's increase from one reading to the next: a drop is a reset (counted from zero),
-- or a wrap when the counter has a modulus and the drop is more than half of it
CREATE FUNCTION ps_increase(before double precision, after double precision, wrap numeric)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN before IS NULL OR after IS NULL THEN NULL
                WHEN after >= before THEN after - before
                WHEN wrap > 0 AND before - after > wrap / 2
                    THEN after - before + wrap::double precision
                ELSE after END
$$;

-- area: the step function's integral from the bucket's first to its last reading (value x s);
-- increase: a counter's increase over the same span; kind: 0 gauge, 1 counter, 2 state;
-- dirty: a merge overlapped stored readings and the bucket awaits its repair
ALTER TABLE rollup_1m ADD COLUMN area double precision, ADD COLUMN increase double precision,
    ADD COLUMN kind smallint NOT NULL DEFAULT 0, ADD COLUMN dirty boolean NOT NULL DEFAULT false;
ALTER TABLE rollup_1h ADD COLUMN area double precision, ADD COLUMN increase double precision,
    ADD COLUMN kind smallint NOT NULL DEFAULT 0, ADD COLUMN dirty boolean NOT NULL DEFAULT false;
-- a state signal's time in each state between the bucket's first and last reading (seconds)
ALTER TABLE rollup_1m ADD COLUMN durations jsonb, ADD COLUMN first_text text,
    ADD COLUMN last_text text;
ALTER TABLE rollup_1h ADD COLUMN durations jsonb, ADD COLUMN first_text text,
    ADD COLUMN last_text text;
CREATE FUNCTION ps_add_durations(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, s), '{}'::jsonb) FROM (
        SELECT k, sum(v::double precision) AS s
        FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
              UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{}'::jsonb))) x (k, v)
        GROUP BY k
    ) y
$$;
CREATE TABLE rollup_1d (LIKE rollup_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE rollup_1d ADD PRIMARY KEY (sensor_id, bucket),
    ADD FOREIGN KEY (sensor_id) REFERENCES sensors (id);
INSERT INTO rollup_1d (sensor_id, bucket, count, sum, min, max, sum_sq, first_ts, first,
                       last_ts, last)
SELECT sensor_id, date_bin('1 day', bucket, timestamptz '2000-01-01 00:00:00+00'),
       sum(count), sum(sum), min(min), max(max), sum(sum_sq),
       min(first_ts), (array_agg(first ORDER BY first_ts))[1],
       max(last_ts), (array_agg(last ORDER BY last_ts DESC))[1]
FROM rollup_1h GROUP BY 1, 2;
-- the buckets late data made dirty, found by the repair pass (store/rollup_repair.py) without
-- a scan; a clean bucket is not in these indexes, so a merge that keeps it clean stays HOT
CREATE INDEX rollup_1m_dirty ON rollup_1m (bucket) WHERE dirty;
CREATE INDEX rollup_1h_dirty ON rollup_1h (bucket) WHERE dirty;
CREATE INDEX rollup_1d_dirty ON rollup_1d (bucket) WHERE dirty;
"""

_KIND = """
UPDATE {table} r SET kind = CASE s.kind WHEN 'counter' THEN 1 WHEN 'state' THEN 2 ELSE 0 END
FROM sensors s WHERE s.id = r.sensor_id AND s.kind <> 'gauge';
"""

_BACKFILL = """
UPDATE {table} r SET area = a.area, increase = a.increase FROM (
    SELECT sensor_id, bucket,
           coalesce(sum(v * extract(epoch FROM next_ts - ts)), 0) AS area,
           coalesce(sum(CASE WHEN kind = 'counter' THEN ps_increase(v, next_v, wrap) END), 0)
               AS increase
    FROM (
        SELECT x.sensor_id, x.bucket, x.ts, x.v, s.kind, s.wrap,
               lead(x.ts) OVER w AS next_ts, lead(x.v) OVER w AS next_v
        FROM (SELECT sensor_id, ts, value AS v,
                     date_bin('{width}', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket
              FROM readings) x
        JOIN sensors s ON s.id = x.sensor_id
        WINDOW w AS (PARTITION BY x.sensor_id, x.bucket ORDER BY x.ts)
    ) pairs GROUP BY 1, 2
) a WHERE r.sensor_id = a.sensor_id AND r.bucket = a.bucket;
"""

DOWNGRADE = """
DROP TABLE rollup_1d;
DROP INDEX rollup_1m_dirty, rollup_1h_dirty;
ALTER TABLE rollup_1m DROP COLUMN area, DROP COLUMN increase, DROP COLUMN kind,
    DROP COLUMN dirty;
ALTER TABLE rollup_1h DROP COLUMN area, DROP COLUMN increase, DROP COLUMN kind,
    DROP COLUMN dirty;
DROP FUNCTION ps_increase;
DROP FUNCTION ps_add_durations;
ALTER TABLE rollup_1m DROP COLUMN durations, DROP COLUMN first_text, DROP COLUMN last_text;
ALTER TABLE rollup_1h DROP COLUMN durations, DROP COLUMN first_text, DROP COLUMN last_text;
DROP TABLE reading_conflicts;
DELETE FROM readings WHERE value IS NULL;
ALTER TABLE readings
    DROP COLUMN quality_code,
    DROP COLUMN value_text,
    DROP COLUMN value_int,
    ALTER COLUMN value SET NOT NULL;
ALTER TABLE sensors DROP COLUMN wrap, DROP COLUMN kind, DROP COLUMN value_type;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for table, width in (
        ("rollup_1m", "1 minute"),
        ("rollup_1h", "1 hour"),
        ("rollup_1d", "1 day"),
    ):
        op.execute(_KIND.format(table=table))
        op.execute(_BACKFILL.format(table=table, width=width))


def downgrade() -> None:
    op.execute(DOWNGRADE)
