"""A member's data in a shop, erased on request, and everyone's, purged
once older than its retention (docs/outcomes.md, "Privacy").

Erasing keeps the aggregate counts (runs' counters, plans' budgets) and the
audit log, which is append-only by design and names members only in
resource names; everything else of the member in the shop goes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.triggers import WaitState
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
    trigger_waits,
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
        rm, fc, failed = run_members.c, frequency_claims.c, item_failures.c

        def mine(table: Table) -> tuple[ColumnElement[bool], ...]:
            return table.c.shop_id == shop_id, table.c.member_id == member_id

        rows: list[tuple[str, Table, tuple[ColumnElement[bool], ...]]] = [
            # A recovery run's rows are the member's benefit instances.
            ("outcomes", run_members, (rm.run_id.in_(shop_runs), rm.member_id.in_(held))),
            ("outcomes", run_members, (rm.run_id.in_(shop_runs), rm.member_id == member_id)),
            ("events", member_events, mine(member_events)),
            ("waits", trigger_waits, mine(trigger_waits)),
            ("orders", orders, mine(orders)),
            ("benefits", member_benefits, mine(member_benefits)),
            ("records", operation_records, mine(operation_records)),
            ("limits", frequency_claims, (fc.plan_id.in_(shop_plans), fc.member_id == member_id)),
            ("limits", contact_claims, mine(contact_claims)),
            (
                "failures",
                item_failures,
                (failed.job_id.in_(shop_jobs), failed.item_key == member_id),
            ),
        ]
        async with self._engine.begin() as conn:
            erased = dict.fromkeys((kind for kind, _, _ in rows), 0)
            for kind, table, where in rows:  # in this order: benefits go after their runs' rows
                erased[kind] += await _gone(conn, table, *where)
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
            # A wait goes with its event's retention once it is over (a
            # waiting one stays until the sweep has acted on it).
            "waits": await self._purge(
                trigger_waits,
                and_(
                    trigger_waits.c.event_time < events_before,
                    trigger_waits.c.state != WaitState.WAITING.value,
                ),
                trigger_waits.c.plan_id,
                trigger_waits.c.member_id,
                trigger_waits.c.event_id,
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
