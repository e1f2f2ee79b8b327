"""Initial schema: sensors, partitioned raw readings, rollups, alerts, dead letters, leases, keys.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ROLLUP_COLUMNS = """
    sensor_id  integer          NOT NULL REFERENCES sensors (id),
    bucket     timestamptz      NOT NULL,
    count      bigint           NOT NULL,
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    sum_sq     double precision NOT NULL,
    first_ts   timestamptz      NOT NULL,
    first      double precision NOT NULL,
    last_ts    timestamptz      NOT NULL,
    last       double precision NOT NULL,
    PRIMARY KEY (sensor_id, bucket)
"""

UPGRADE = f"""
CREATE TABLE sensors (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    facility   text        NOT NULL,
    device     text        NOT NULL,
    metric     text        NOT NULL,
    unit       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (facility, device, metric)
);

-- raw readings; one row per (sensor, timestamp): a repeat of that identity is a duplicate
CREATE TABLE readings (
    sensor_id integer          NOT NULL,
    ts        timestamptz      NOT NULL,
    value     double precision NOT NULL,
    quality   smallint         NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE rollup_1m ({_ROLLUP_COLUMNS});
CREATE TABLE rollup_1h ({_ROLLUP_COLUMNS});

CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    facility        text        NOT NULL,
    device          text        NOT NULL,
    metric          text        NOT NULL,
    sensor_id       integer     REFERENCES sensors (id),
    detector        text        NOT NULL,
    severity        text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state           text        NOT NULL DEFAULT 'open'
                                CHECK (state IN ('open', 'acknowledged', 'resolved')),
    message         text        NOT NULL,
    opened_at       timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    details         jsonb       NOT NULL DEFAULT '{{}}'
);
CREATE INDEX alerts_facility_state ON alerts (facility, state, opened_at DESC);
-- at most one unresolved alert per sensor and detector: one fault, one alert
CREATE UNIQUE INDEX alerts_one_active ON alerts (facility, device, metric, detector)
    WHERE state <> 'resolved';

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream      text        NOT NULL,
    shard_id    text        NOT NULL,
    sequence    text        NOT NULL,
    facility    text,
    reason_code text        NOT NULL,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_facility ON dead_letters (facility, created_at);

-- a shard's lease and checkpoint live in one row, so a commit can check its fencing token
CREATE TABLE shard_leases (
    stream       text        NOT NULL,
    shard_id     text        NOT NULL,
    parent_ids   text[]      NOT NULL DEFAULT '{{}}',
    owner        text,
    token        bigint      NOT NULL DEFAULT 0,
    expires_at   timestamptz,
    checkpoint   text,
    finished     boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, shard_id)
);

-- per facility and counter; written in the batch's transaction so the books always balance
CREATE TABLE processor_counters (
    facility text   NOT NULL,
    counter  text   NOT NULL,
    value    bigint NOT NULL,
    PRIMARY KEY (facility, counter)
);

CREATE TABLE api_keys (
    key_id     text        PRIMARY KEY,
    facility   text,
    role       text        NOT NULL CHECK (role IN ('ingest', 'read', 'admin')),
    secret_hash bytea      NOT NULL,
    label      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    CHECK ((role = 'admin') = (facility IS NULL))
);
"""

DOWNGRADE = """
DROP TABLE api_keys, processor_counters, shard_leases, dead_letters, alerts,
           rollup_1h, rollup_1m, readings, sensors;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
