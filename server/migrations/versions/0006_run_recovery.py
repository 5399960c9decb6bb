"""Recovery runs: a run may take back what another run granted, and the
records of a run are paged in key order by its recovery.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plan_runs") as batch:
        batch.add_column(
            sa.Column("target_run_id", sa.String(64), nullable=False, server_default="")
        )
    op.drop_index("ix_operation_records_run", table_name="operation_records")
    op.create_index(
        "ix_operation_records_run", "operation_records", ["run_id", "kind", "record_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_operation_records_run", table_name="operation_records")
    op.create_index("ix_operation_records_run", "operation_records", ["run_id", "kind"])
    with op.batch_alter_table("plan_runs") as batch:
        batch.drop_column("target_run_id")
