"""One calendar for a plan's time: the scheduler keeps its place (a cursor
and the time its next decision is due), plans say why they ended, and
skipped fires are kept among the runs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("end_reason", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("schedule_cursor", UtcDateTime()))
        batch.add_column(sa.Column("next_check_time", UtcDateTime()))
    # A plan scheduled before this revision is next looked at when it was
    # due to fire; its cursor is left unset and read as just before that.
    op.execute("UPDATE plans SET next_check_time = next_fire_time")
    op.drop_index("ix_plans_due", table_name="plans")
    op.create_index("ix_plans_due", "plans", ["state", "next_check_time"])
    with op.batch_alter_table("plan_runs") as batch:
        batch.add_column(sa.Column("skip_reason", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("resume_time", UtcDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("plan_runs") as batch:
        batch.drop_column("resume_time")
        batch.drop_column("skip_reason")
    op.drop_index("ix_plans_due", table_name="plans")
    op.create_index("ix_plans_due", "plans", ["state", "next_fire_time"])
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("next_check_time")
        batch.drop_column("schedule_cursor")
        batch.drop_column("end_reason")
