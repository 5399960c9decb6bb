"""A shop's policy (contact limits, approval threshold), the slots its
contact limits count across plans, and a large plan's approval.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shop_policies",
        sa.Column("shop_id", sa.String(64), primary_key=True),
        sa.Column("contact_limits", sa.JSON, nullable=False),
        sa.Column("approval_threshold", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("update_by", sa.String(200), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "contact_claims",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint(
            "shop_id", "channel", "window", "member_id", "slot", name="pk_contact_claims"
        ),
    )
    op.create_index("ix_contact_claims_run", "contact_claims", ["run_id", "member_id"])
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("approval", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("approval")
    op.drop_index("ix_contact_claims_run", table_name="contact_claims")
    op.drop_table("contact_claims")
    op.drop_table("shop_policies")
