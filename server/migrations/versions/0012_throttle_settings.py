"""The downstream throttles' settings in the database, their source of truth
(Redis caches them): a Redis restart, flush or failover cannot change the
rate in force.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("capacity", sa.BigInteger, nullable=False),
        sa.Column("update_by", sa.String(200), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("throttle_settings")
