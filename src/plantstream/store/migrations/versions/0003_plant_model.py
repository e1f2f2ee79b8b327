"""The plant model: areas, lines, machines, machine types, signal definitions, unknown policy.

Every row belongs to one facility (the first column of each key). A machine's id is the
``device`` of its readings; signal definitions are per facility (a machine type lists which
of them its machines send). Facilities with no rows here use the default catalog.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE facility_settings (
    facility        text        PRIMARY KEY,
    unknown_signals text        NOT NULL DEFAULT 'refuse'
                                CHECK (unknown_signals IN ('refuse', 'register')),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signal_defs (
    facility       text             NOT NULL,
    name           text             NOT NULL,
    value_type     text             NOT NULL
                   CHECK (value_type IN ('double', 'int64', 'bool', 'string', 'state')),
    kind           text             NOT NULL CHECK (kind IN ('gauge', 'counter', 'state')),
    unit           text             NOT NULL DEFAULT '',
    accepted_units text[]           NOT NULL DEFAULT '{}',
    low            double precision,
    high           double precision,
    description    text             NOT NULL DEFAULT '',
    states         text[]           NOT NULL DEFAULT '{}',
    wrap           numeric(20, 0)   CHECK (wrap IS NULL OR wrap >= 2),  -- up to 2**64
    max_length     integer          NOT NULL DEFAULT 256 CHECK (max_length > 0),
    unclassified   boolean          NOT NULL DEFAULT false,
    properties     jsonb            NOT NULL DEFAULT '{}',
    created_at     timestamptz      NOT NULL DEFAULT now(),
    updated_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (facility, name)
);
-- the admin's review list: what the register policy let in
CREATE INDEX signal_defs_unclassified ON signal_defs (facility) WHERE unclassified;

CREATE TABLE machine_types (
    facility    text NOT NULL,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (facility, name)
);

CREATE TABLE machine_type_signals (
    facility     text     NOT NULL,
    machine_type text     NOT NULL,
    signal       text     NOT NULL,
    position     smallint NOT NULL,
    PRIMARY KEY (facility, machine_type, signal),
    FOREIGN KEY (facility, machine_type) REFERENCES machine_types ON DELETE CASCADE,
    FOREIGN KEY (facility, signal) REFERENCES signal_defs
);

CREATE TABLE plant_areas (
    facility text NOT NULL,
    id       text NOT NULL,
    name     text NOT NULL DEFAULT '',
    PRIMARY KEY (facility, id)
);

CREATE TABLE plant_lines (
    facility text NOT NULL,
    id       text NOT NULL,
    area     text,
    name     text NOT NULL DEFAULT '',
    PRIMARY KEY (facility, id),
    FOREIGN KEY (facility, area) REFERENCES plant_areas
);

CREATE TABLE machines (
    facility     text NOT NULL,
    id           text NOT NULL,
    area         text,
    line         text,
    machine_type text,
    name         text NOT NULL DEFAULT '',
    PRIMARY KEY (facility, id),
    FOREIGN KEY (facility, area) REFERENCES plant_areas,
    FOREIGN KEY (facility, line) REFERENCES plant_lines,
    FOREIGN KEY (facility, machine_type) REFERENCES machine_types
);
CREATE INDEX machines_facility_area ON machines (facility, area, line);
CREATE INDEX machines_facility_type ON machines (facility, machine_type);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(
        "DROP TABLE machines, plant_lines, plant_areas, machine_type_signals, machine_types, "
        "signal_defs, facility_settings"
    )
