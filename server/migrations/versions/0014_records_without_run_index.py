"""Operation records lose their index by run: every grant of a run wrote an
entry into it (one of seven index entries per member), for the one reader
that pages a run's grants, the recovery run, which now reads them through
the run's members (run_members' key) and each member's records.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_operation_records_run", table_name="operation_records")


def downgrade() -> None:
    op.create_index(
        "ix_operation_records_run", "operation_records", ["run_id", "kind", "record_id"]
    )
