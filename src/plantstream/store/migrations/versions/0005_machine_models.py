"""Machine models (multivariate detection): each training or removal of a machine's model is
a row with who and when; the newest row of a machine is in force (a removal has no model).

Revision ID: 0005
Revises: 0004

Parameters are JSON arrays of numbers (never pickled objects): the signals' centre and
scale, the principal components (k x p), their variances and the T^2 and Q limits.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE machine_models (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            facility     text        NOT NULL,
            machine      text        NOT NULL,
            version      integer     NOT NULL,
            -- NULL for a removal; else {"signals": [...], "center": [...], "scale": [...],
            -- "components": [[...]], "variances": [...], "t2_limit": x, "q_limit": x}
            model        jsonb,
            per_bucket   integer,
            trained_from timestamptz,
            trained_to   timestamptz,
            readings     integer,
            buckets      integer,
            created_at   timestamptz NOT NULL DEFAULT now(),
            created_by   text        NOT NULL,
            UNIQUE (facility, machine, version)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE machine_models;")
