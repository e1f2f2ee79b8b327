"""Detector settings, versioned: each change is a row with who and when.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE detector_config (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            config     jsonb       NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text        NOT NULL,
            comment    text        NOT NULL DEFAULT ''
        );
        CREATE INDEX alerts_open_sensor ON alerts (facility, device, metric)
            WHERE state <> 'resolved';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE detector_config; DROP INDEX alerts_open_sensor;")
