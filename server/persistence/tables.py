"""The schema, as SQLAlchemy Core tables. Alembic migrations create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
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
    Column("end_reason", String(32), nullable=False, server_default=""),
    # The scheduler's place (domain.scheduling): decided up to the cursor,
    # next decision due at the check time.
    Column("schedule_cursor", UtcDateTime()),
    Column("next_check_time", UtcDateTime()),
    # A large plan's approval (domain.plan_codec.approval_to_dict), once asked for.
    Column("approval", JSON),
    PrimaryKeyConstraint("shop_id", "plan_id", name="pk_plans"),
    # Lists are per shop, newest first.
    Index("ix_plans_shop_created", "shop_id", "create_time", "plan_id"),
    Index("ix_plans_shop_front_office", "shop_id", "front_office"),
    # The scheduler's question, "which plans are due?", costs O(due plans).
    Index("ix_plans_due", "state", "next_check_time"),
    # The shopper's side asks for a shop's active plans on every page.
    Index("ix_plans_shop_state", "shop_id", "state"),
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


# The task engine (server/tasks): jobs split into shards, and items that
# failed, waiting for a retry or dead-lettered.
# States of jobs and shards.
PENDING, RUNNING, DONE = "pending", "running", "done"
PAUSED, CANCELLED = "paused", "cancelled"

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    Column("state", String(24), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("due_time", UtcDateTime(), nullable=False),
    Column("total", BigInteger, nullable=False, default=0),
    Column("done", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    # Items per second, decayed with time since `rate_time` (see TaskStore).
    Column("rate", Float, nullable=False, default=0.0),
    Column("rate_time", UtcDateTime()),
    Column("rate_since", UtcDateTime()),
    # Whom the job runs for (its shop): workers take turns between tenants.
    Column("tenant", String(64), nullable=False, server_default=""),
    UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
    Index("ix_jobs_state_due", "state", "due_time"),
)

shards = Table(
    "shards",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("shard_index", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("cursor", Text, nullable=False),
    Column("done", BigInteger, nullable=False, default=0),
    Column("lease_owner", String(64), nullable=False, default=""),
    Column("lease_until", UtcDateTime()),
    Column("fencing", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("job_id", "shard_index", name="pk_shards"),
    Index("ix_shards_state_lease", "state", "lease_until"),
)

item_failures = Table(
    "item_failures",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("item_key", String(200), nullable=False),
    Column("item", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("next_retry_time", UtcDateTime()),
    PrimaryKeyConstraint("job_id", "item_key", name="pk_item_failures"),
    Index("ix_item_failures_retry", "state", "next_retry_time"),
)

# One execution of a plan: for one fire time (delivery) or to take back what
# a run granted (recovery). Its state and progress are its engine job's.
plan_runs = Table(
    "plan_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("run_trigger", String(16), nullable=False),
    Column("fire_time", UtcDateTime(), nullable=False),
    Column("job_id", String(64), nullable=False, default=""),
    Column("create_time", UtcDateTime(), nullable=False),
    # A recovery run: the run whose grants it takes back.
    Column("target_run_id", String(64), nullable=False, server_default=""),
    # A skipped fire (no job): why, and the next fire that counts.
    Column("skip_reason", String(32), nullable=False, server_default=""),
    Column("resume_time", UtcDateTime()),
    # Whether the plan granted when the run was made: an acted-on member's
    # outcome reads GRANTED, else SENT (domain.outcomes).
    Column("grants", Boolean, nullable=False, server_default=true()),
    # The run id is derived from (plan, kind, fire time) — or, by hand, from
    # the request id — so the primary key makes a run once.
    Index("ix_plan_runs_plan", "shop_id", "plan_id", "create_time"),
)

# What a run decided for each member it met, once, in the short form of
# domain.outcomes. Inserted once per (run, member), so counters never count a
# member twice.
run_members = Table(
    "run_members",
    metadata,
    Column("run_id", String(64), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("units", BigInteger, nullable=False, default=0),  # budget reserved
    PrimaryKeyConstraint("run_id", "member_id", name="pk_run_members"),
    # A member's outcomes across runs, and erasing them.
    Index("ix_run_members_member", "member_id", "run_id"),
)

# What front offices say happened to members (RecordMemberEvents), once per
# event id within the shop.
member_events = Table(
    "member_events",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("occur_time", UtcDateTime(), nullable=False),
    Column("detail", JSON, nullable=False),
    PrimaryKeyConstraint("shop_id", "event_id", name="pk_member_events"),
    Index("ix_member_events_member", "shop_id", "member_id"),
    Index("ix_member_events_time", "occur_time"),
)

# A member's wait for an event-triggered plan (docs/triggers.md): once per
# (plan, member, triggering event). `waiting` until due, then `launched` into
# a run (run_id), or `cancelled` by the plan's unless-event, or `dropped`
# (the plan no longer live then), with the reason.
trigger_waits = Table(
    "trigger_waits",
    metadata,
    Column("plan_id", String(64), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("shop_id", String(64), nullable=False),
    Column("event_time", UtcDateTime(), nullable=False),
    Column("due_time", UtcDateTime(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("reason", String(200), nullable=True),
    PrimaryKeyConstraint("plan_id", "member_id", "event_id", name="pk_trigger_waits"),
    # The due ones, earliest first: what the sweep reads, O(due).
    Index("ix_trigger_waits_due", "state", "due_time"),
    # A member's waits: cancelling them on his unless-event, erasing them.
    Index("ix_trigger_waits_member", "shop_id", "member_id"),
)

# Paid orders, net of their refunds: what plans' effects are measured on.
orders = Table(
    "orders",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("order_id", String(64), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("store_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False, default=0),
    Column("paid_time", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("shop_id", "order_id", name="pk_orders"),
    Index("ix_orders_member", "shop_id", "member_id", "paid_time"),
    Index("ix_orders_paid", "paid_time"),
)

# Frequency limits: the n-th time a member is acted on in a window is slot n,
# unique, so two runs racing can never both take the last one.
frequency_claims = Table(
    "frequency_claims",
    metadata,
    Column("plan_id", String(64), nullable=False),
    Column("window", String(32), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("run_id", String(64), nullable=False),
    PrimaryKeyConstraint("plan_id", "window", "member_id", "slot", name="pk_frequency_claims"),
)

# A shop's policy (domain.shop_policy), one row a shop: its contact limits
# as JSON, and the audience above which publishing needs an approval.
shop_policies = Table(
    "shop_policies",
    metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("contact_limits", JSON, nullable=False),
    Column("approval_threshold", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("update_by", String(200), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

# Contact limits: the n-th message a member gets on a channel in a window,
# from any plan of the shop, is slot n, unique — as frequency claims are.
contact_claims = Table(
    "contact_claims",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("window", String(16), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("run_id", String(64), nullable=False),
    PrimaryKeyConstraint(
        "shop_id", "channel", "window", "member_id", "slot", name="pk_contact_claims"
    ),
    Index("ix_contact_claims_run", "run_id", "member_id"),
)

plan_budgets = Table(
    "plan_budgets",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("used", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("shop_id", "plan_id", name="pk_plan_budgets"),
)

run_counters = Table(
    "run_counters",
    metadata,
    Column("run_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("run_id", "name", name="pk_run_counters"),
)

# The member's timeline (benefit granted, message sent, used, replenished,
# recovered). The id is the idempotency key of what happened, so writing a
# record twice keeps one.
operation_records = Table(
    "operation_records",
    metadata,
    Column("record_id", String(300), primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=False, default=""),
    Column("instance_id", String(64), nullable=False, default=""),
    Column("template_id", String(64), nullable=False, default=""),
    Column("detail", JSON, nullable=False),
    Column("occur_time", UtcDateTime(), nullable=False),
    # No index by run: every grant would maintain it; a run's records are
    # found through its members (run_members), then by member.
    Index("ix_operation_records_member", "shop_id", "member_id", "occur_time"),
)

# The plan benefits members hold: written when a run grants them, changed
# when a front office reports them used or given back and when they are
# taken back, so that the shopper's side reads one indexed table instead of
# asking the benefit platform on every page. Expired is not stored: it is
# "unused and past valid_until", decided at reading time.
member_benefits = Table(
    "member_benefits",
    metadata,
    Column("shop_id", String(64), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("member_id", String(64), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("template_id", String(64), nullable=False),
    Column("template_version", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # unused | used | recovered
    Column("valid_from", UtcDateTime()),
    Column("valid_until", UtcDateTime()),
    Column("grant_time", UtcDateTime(), nullable=False),
    Column("use_time", UtcDateTime()),
    Column("order_id", String(64), nullable=False),
    PrimaryKeyConstraint("shop_id", "instance_id", name="pk_member_benefits"),
    Index("ix_member_benefits_member", "shop_id", "member_id", "grant_time", "instance_id"),
)

# The downstream throttles' settings: the source of truth, which Redis (or
# the process) caches (server/throttle). A bucket named "benefit" is the
# platform-wide one; "benefit:SHOP" a shop's share.
throttle_settings = Table(
    "throttle_settings",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("rate", Float, nullable=False),
    Column("capacity", BigInteger, nullable=False),
    # A shop's weight in the downstream's shares (rows named "benefit:SHOP");
    # None for the downstream's own row.
    Column("weight", Float, nullable=True),
    Column("update_by", String(200), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
)

# Every change a call made, and every state-changing call that failed:
# append-only (the migration's triggers refuse UPDATE and DELETE), written
# in the changing transaction (server/persistence/audit_log.py).
audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("time", UtcDateTime(), nullable=False),
    Column("shop_id", String(64), nullable=False),
    Column("caller", String(200), nullable=False),
    Column("rpc", String(200), nullable=False),
    Column("resource", String(300), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Index("ix_audit_entries_shop", "shop_id", "seq"),
    Index("ix_audit_entries_shop_resource", "shop_id", "resource", "seq"),
)
