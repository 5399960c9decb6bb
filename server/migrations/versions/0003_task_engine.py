"""The task engine: jobs, their shards, and items that failed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("due_time", UtcDateTime(), nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
    )
    op.create_index("ix_jobs_state_due", "jobs", ["state", "due_time"])
    op.create_table(
        "shards",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("shard_index", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=False, server_default=""),
        sa.Column("lease_until", UtcDateTime()),
        sa.Column("fencing", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("job_id", "shard_index", name="pk_shards"),
    )
    op.create_index("ix_shards_state_lease", "shards", ["state", "lease_until"])
    op.create_table(
        "item_failures",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("item", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("next_retry_time", UtcDateTime()),
        sa.PrimaryKeyConstraint("job_id", "item_key", name="pk_item_failures"),
    )
    op.create_index("ix_item_failures_retry", "item_failures", ["state", "next_retry_time"])


def downgrade() -> None:
    op.drop_table("item_failures")
    op.drop_table("shards")
    op.drop_table("jobs")
