"""A member's data in a shop, erased on request, and everyone's, purged
once older than its retention (docs/outcomes.md, "Privacy").

Erasing keeps the aggregate counts (runs' counters, plans' budgets) and the
audit log, which is append-only by design and names members only in
resource names; everything else of the member in the shop goes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.persistence.audit_log import record_change
from server.persistence.tables import (
    contact_claims,
    frequency_claims,
    item_failures,
    member_benefits,
    member_events,
    operation_records,
    orders,
    plan_runs,
    plans,
    run_members,
)

PURGE_BATCH = 10_000


class MemberData:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def erase(self, shop_id: str, member_id: str) -> dict[str, int]:
        """Remove the member's rows in the shop, in one transaction, audited;
        how many of each kind went."""
        shop_runs = select(plan_runs.c.run_id).where(plan_runs.c.shop_id == shop_id)
        shop_jobs = select(plan_runs.c.job_id).where(plan_runs.c.shop_id == shop_id)
        shop_plans = select(plans.c.plan_id).where(plans.c.shop_id == shop_id)
        held = select(member_benefits.c.instance_id).where(
            member_benefits.c.shop_id == shop_id, member_benefits.c.member_id == member_id
        )
        rm, mb = run_members.c, member_benefits.c
        async with self._engine.begin() as conn:
            erased = {
                # A recovery run's rows are the member's benefit instances.
                "outcomes": await _gone(
                    conn, run_members, rm.run_id.in_(shop_runs), rm.member_id.in_(held)
                )
                + await _gone(
                    conn, run_members, rm.run_id.in_(shop_runs), rm.member_id == member_id
                ),
                "events": await _gone(
                    conn,
                    member_events,
                    member_events.c.shop_id == shop_id,
                    member_events.c.member_id == member_id,
                ),
                "orders": await _gone(
                    conn, orders, orders.c.shop_id == shop_id, orders.c.member_id == member_id
                ),
                "benefits": await _gone(
                    conn, member_benefits, mb.shop_id == shop_id, mb.member_id == member_id
                ),
                "records": await _gone(
                    conn,
                    operation_records,
                    operation_records.c.shop_id == shop_id,
                    operation_records.c.member_id == member_id,
                ),
                "limits": await _gone(
                    conn,
                    frequency_claims,
                    frequency_claims.c.plan_id.in_(shop_plans),
                    frequency_claims.c.member_id == member_id,
                )
                + await _gone(
                    conn,
                    contact_claims,
                    contact_claims.c.shop_id == shop_id,
                    contact_claims.c.member_id == member_id,
                ),
                "failures": await _gone(
                    conn,
                    item_failures,
                    item_failures.c.job_id.in_(shop_jobs),
                    item_failures.c.item_key == member_id,
                ),
            }
            # On record even when nothing was left: the request itself is the fact.
            await record_change(conn, shop_id, f"members/{member_id}", erased, None)
        return erased

    async def purge(
        self, outcomes_before: datetime, events_before: datetime, orders_before: datetime
    ) -> dict[str, int]:
        """Delete what is older than its retention, a batch per transaction
        so no lock is held long; how many rows of each went."""
        old_runs = select(plan_runs.c.run_id).where(plan_runs.c.fire_time < outcomes_before)
        return {
            "outcomes": await self._purge(
                run_members,
                run_members.c.run_id.in_(old_runs),
                run_members.c.run_id,
                run_members.c.member_id,
            ),
            "events": await self._purge(
                member_events,
                member_events.c.occur_time < events_before,
                member_events.c.shop_id,
                member_events.c.event_id,
            ),
            "orders": await self._purge(
                orders, orders.c.paid_time < orders_before, orders.c.shop_id, orders.c.order_id
            ),
        }

    async def _purge(self, table: Table, old: ColumnElement[bool], *key: Any) -> int:
        total = 0
        while True:
            async with self._engine.begin() as conn:
                # The batch's keys as a subquery: a list of 10,000 key pairs
                # as parameters is more than PostgreSQL's parser takes.
                batch = select(*key).where(old).limit(PURGE_BATCH)
                gone = await conn.execute(delete(table).where(tuple_(*key).in_(batch)))
            count = int(gone.rowcount or 0)
            total += count
            if count < PURGE_BATCH:
                return total


async def _gone(conn: AsyncConnection, table: Table, *where: ColumnElement[bool]) -> int:
    result = await conn.execute(delete(table).where(*where))
    return int(result.rowcount or 0)
