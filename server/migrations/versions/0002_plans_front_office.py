"""Plans: a front_office column, so lists can filter on it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "plans",
        sa.Column("front_office", sa.String(16), nullable=False, server_default="unspecified"),
    )
    # Existing plans keep their front office in the spec document.
    plans = sa.table(
        "plans",
        sa.column("shop_id", sa.String),
        sa.column("plan_id", sa.String),
        sa.column("spec", sa.JSON),
        sa.column("front_office", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(plans.c.shop_id, plans.c.plan_id, plans.c.spec)).all()
    for shop_id, plan_id, spec in rows:
        bind.execute(
            plans.update()
            .where(plans.c.shop_id == shop_id, plans.c.plan_id == plan_id)
            .values(front_office=spec.get("front_office", "unspecified"))
        )
    op.create_index("ix_plans_shop_front_office", "plans", ["shop_id", "front_office"])


def downgrade() -> None:
    op.drop_index("ix_plans_shop_front_office", table_name="plans")
    op.drop_column("plans", "front_office")
