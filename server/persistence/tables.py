"""The schema, as SQLAlchemy Core tables. Alembic migrations create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
)

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no
    zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every stored instant must be aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        instant: datetime = value
        if instant.tzinfo is None:
            return instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC)


plans = Table(
    "plans",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("business_product", String(32), nullable=False),
    Column("front_office", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("revision", BigInteger, nullable=False),
    # The merchant's plan (audience, time, actions, limits) as domain.plan_codec writes it.
    Column("spec", JSON, nullable=False),
    Column("template_id", String(64), nullable=False, default=""),
    Column("create_by", String(200), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_by", String(200), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("publish_time", UtcDateTime()),
    Column("end_time", UtcDateTime()),
    Column("next_fire_time", UtcDateTime()),
    PrimaryKeyConstraint("shop_id", "plan_id", name="pk_plans"),
    # Lists are per shop, newest first.
    Index("ix_plans_shop_created", "shop_id", "create_time", "plan_id"),
    Index("ix_plans_shop_front_office", "shop_id", "front_office"),
)

# Outcomes of side-effecting calls by request id (AIP-155): a retry returns
# the first outcome. Written in the transaction of the change itself.
requests = Table(
    "requests",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("outcome", JSON, nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("shop_id", "operation", "request_id", name="pk_requests"),
)
