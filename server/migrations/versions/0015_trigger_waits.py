"""Members' waits for event-triggered plans (issue 26, docs/triggers.md).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trigger_waits",
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("event_time", UtcDateTime(), nullable=False),
        sa.Column("due_time", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("plan_id", "member_id", "event_id", name="pk_trigger_waits"),
    )
    op.create_index("ix_trigger_waits_due", "trigger_waits", ["state", "due_time"])
    op.create_index("ix_trigger_waits_member", "trigger_waits", ["shop_id", "member_id"])


def downgrade() -> None:
    op.drop_index("ix_trigger_waits_member", table_name="trigger_waits")
    op.drop_index("ix_trigger_waits_due", table_name="trigger_waits")
    op.drop_table("trigger_waits")
