"""Plan runs: the runs, each member's outcome in a run, the user operation
records, run counters, budgets, and the index that finds due plans.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_plans_due", "plans", ["state", "next_fire_time"])
    op.create_table(
        "plan_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("run_trigger", sa.String(16), nullable=False),
        sa.Column("fire_time", UtcDateTime(), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("create_time", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_plan_runs_plan", "plan_runs", ["shop_id", "plan_id", "create_time"])
    op.create_table(
        "run_members",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("run_id", "member_id", name="pk_run_members"),
    )
    op.create_table(
        "frequency_claims",
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint(
            "plan_id", "window", "member_id", "slot", name="pk_frequency_claims"
        ),
    )
    op.create_table(
        "plan_budgets",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("shop_id", "plan_id", name="pk_plan_budgets"),
    )
    op.create_table(
        "run_counters",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_counters"),
    )
    op.create_table(
        "operation_records",
        sa.Column("record_id", sa.String(300), primary_key=True),
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("instance_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("template_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("occur_time", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_operation_records_member", "operation_records", ["shop_id", "member_id", "occur_time"]
    )
    op.create_index("ix_operation_records_run", "operation_records", ["run_id", "kind"])


def downgrade() -> None:
    for table in (
        "operation_records",
        "run_counters",
        "plan_budgets",
        "frequency_claims",
        "run_members",
        "plan_runs",
    ):
        op.drop_table(table)
    op.drop_index("ix_plans_due", "plans")
