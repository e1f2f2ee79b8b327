"""Typed values: int64 and text beside the double, the source's quality code, sensor types,
and conflicts kept for review.

Revision ID: 0004
Revises: 0003

Nullable columns without a default are added as catalog changes only (no table rewrite), so
the upgrade is quick on a large ``readings`` table and loses nothing: every existing row is a
double and stays as it was. ``production_count``, a counter in the default catalog, becomes an
int64 counter sensor; its old rows read back as integers from ``value`` (they are integral).
"""

from alembic import op

revision = "0004"
down_revision = "0002"  # MERGE: becomes 0003
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
"""

DOWNGRADE = """
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


def downgrade() -> None:
    op.execute(DOWNGRADE)
