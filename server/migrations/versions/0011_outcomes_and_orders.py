"""Members' outcomes read across runs, members' events and orders, for
plans' effects (docs/outcomes.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.persistence.tables import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plan_runs") as batch:
        batch.add_column(sa.Column("grants", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_index("ix_run_members_member", "run_members", ["member_id", "run_id"])
    op.create_table(
        "member_events",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("occur_time", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "event_id", name="pk_member_events"),
    )
    op.create_index("ix_member_events_member", "member_events", ["shop_id", "member_id"])
    op.create_index("ix_member_events_time", "member_events", ["occur_time"])
    op.create_table(
        "orders",
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "order_id", name="pk_orders"),
    )
    op.create_index("ix_orders_member", "orders", ["shop_id", "member_id", "paid_time"])
    op.create_index("ix_orders_paid", "orders", ["paid_time"])


def downgrade() -> None:
    op.drop_index("ix_orders_paid", table_name="orders")
    op.drop_index("ix_orders_member", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_member_events_time", table_name="member_events")
    op.drop_index("ix_member_events_member", table_name="member_events")
    op.drop_table("member_events")
    op.drop_index("ix_run_members_member", table_name="run_members")
    with op.batch_alter_table("plan_runs") as batch:
        batch.drop_column("grants")
