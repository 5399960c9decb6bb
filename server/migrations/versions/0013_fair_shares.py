"""Fair shares across shops: a shop's weight in a downstream's throttle, and
the shop each job runs for, so workers take turns between shops.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_jobs = sa.table(
    "jobs",
    sa.column("job_id", sa.String),
    sa.column("state", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("tenant", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("throttle_settings") as batch:
        batch.add_column(sa.Column("weight", sa.Float, nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=False, server_default=""))
    # Jobs not yet finished run for the shop their payload names.
    conn = op.get_bind()
    unfinished = conn.execute(
        sa.select(_jobs.c.job_id, _jobs.c.payload).where(_jobs.c.state != "done")
    ).all()
    for job_id, payload in unfinished:
        shop = (payload or {}).get("shop_id", "")
        if shop:
            conn.execute(
                sa.update(_jobs).where(_jobs.c.job_id == job_id).values(tenant=str(shop)[:64])
            )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("tenant")
    with op.batch_alter_table("throttle_settings") as batch:
        batch.drop_column("weight")
