"""The shopper's side: the plan benefits members hold, and a shop's active
plans found by index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_plans_shop_state", "plans", ["shop_id", "state"])
    op.create_table(
        "member_benefits",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("template_version", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("valid_from", UtcDateTime()),
        sa.Column("valid_until", UtcDateTime()),
        sa.Column("grant_time", UtcDateTime(), nullable=False),
        sa.Column("use_time", UtcDateTime()),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "instance_id", name="pk_member_benefits"),
    )
    op.create_index(
        "ix_member_benefits_member",
        "member_benefits",
        ["shop_id", "member_id", "grant_time", "instance_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_member_benefits_member", table_name="member_benefits")
    op.drop_table("member_benefits")
    op.drop_index("ix_plans_shop_state", table_name="plans")
