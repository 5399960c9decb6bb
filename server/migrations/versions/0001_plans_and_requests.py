"""Plans and the request log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("business_product", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("create_by", sa.String(200), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_by", sa.String(200), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("publish_time", UtcDateTime()),
        sa.Column("end_time", UtcDateTime()),
        sa.Column("next_fire_time", UtcDateTime()),
        sa.PrimaryKeyConstraint("shop_id", "plan_id", name="pk_plans"),
    )
    op.create_index("ix_plans_shop_created", "plans", ["shop_id", "create_time", "plan_id"])
    op.create_table(
        "requests",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "operation", "request_id", name="pk_requests"),
    )


def downgrade() -> None:
    op.drop_table("requests")
    op.drop_index("ix_plans_shop_created", table_name="plans")
    op.drop_table("plans")
