"""A job's current rate: a time-decayed count of items recorded since the job
(or its resumption) started, for progress and ETA across every replica.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("rate", sa.Float, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("rate_time", UtcDateTime()))
    op.add_column("jobs", sa.Column("rate_since", UtcDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("rate_since")
        batch.drop_column("rate_time")
        batch.drop_column("rate")
