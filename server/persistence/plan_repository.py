"""Plans in the database, always within one shop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import Aborted
from domain.plan import Plan, PlanState
from domain.plan_codec import (
    UNSET,
    approval_from_dict,
    approval_to_dict,
    spec_from_dict,
    spec_to_dict,
)
from domain.ports import PlanCursor, PlanFilter, SchedulePlace
from server.persistence.audit_log import record_change
from server.persistence.tables import plans


class SqlPlanRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection
        self.changed_shops: set[str] = set()  # told to caches once committed

    async def add(self, plan: Plan) -> None:
        self.changed_shops.add(plan.shop_id)
        row = plan_row(plan)
        await self._conn.execute(insert(plans).values(**row))
        await record_change(self._conn, plan.shop_id, _resource(plan), None, row)

    async def get(self, shop_id: str, plan_id: str) -> Plan | None:
        result = await self._conn.execute(
            select(plans).where(plans.c.shop_id == shop_id, plans.c.plan_id == plan_id)
        )
        row = result.mappings().first()
        return None if row is None else plan_from_row(row)

    async def list(
        self, shop_id: str, filter: PlanFilter, after: PlanCursor | None, limit: int
    ) -> Sequence[Plan]:
        query = select(plans).where(plans.c.shop_id == shop_id)
        if filter.state is not None:
            query = query.where(plans.c.state == filter.state.value)
        if filter.product_id:
            query = query.where(plans.c.business_product == filter.product_id)
        if filter.front_office is not None:
            query = query.where(plans.c.front_office == filter.front_office.value)
        if filter.name_contains:
            query = query.where(
                func.lower(plans.c.display_name).contains(
                    filter.name_contains.lower(), autoescape=True
                )
            )
        if after is not None:
            query = query.where(
                or_(
                    plans.c.create_time < after.create_time,
                    and_(plans.c.create_time == after.create_time, plans.c.plan_id < after.plan_id),
                )
            )
        query = query.order_by(plans.c.create_time.desc(), plans.c.plan_id.desc()).limit(limit)
        result = await self._conn.execute(query)
        return [plan_from_row(row) for row in result.mappings()]

    async def save(self, plan: Plan, before: Plan) -> None:
        """`before` as it was read, now `plan`, unless it changed meanwhile."""
        self.changed_shops.add(plan.shop_id)
        row = plan_row(plan)
        values = {k: v for k, v in row.items() if k not in ("shop_id", "plan_id")}
        result = await self._conn.execute(
            update(plans)
            .where(
                plans.c.shop_id == plan.shop_id,
                plans.c.plan_id == plan.plan_id,
                plans.c.revision == before.revision,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise Aborted(
                f"plan {plan.plan_id} was changed concurrently; get it again and retry",
                reason="ETAG_MISMATCH",
            )
        await record_change(self._conn, plan.shop_id, _resource(plan), plan_row(before), row)

    async def delete(self, plan: Plan) -> None:
        self.changed_shops.add(plan.shop_id)
        # The revision and state in the WHERE clause make a concurrent update
        # or publish win over a delete decided on what was read before it.
        result = await self._conn.execute(
            delete(plans).where(
                plans.c.shop_id == plan.shop_id,
                plans.c.plan_id == plan.plan_id,
                plans.c.revision == plan.revision,
                plans.c.state.in_((PlanState.DRAFT.value, PlanState.AWAITING_APPROVAL.value)),
            )
        )
        if result.rowcount != 1:
            raise Aborted(
                f"plan {plan.plan_id} was changed concurrently; get it again and retry",
                reason="ETAG_MISMATCH",
            )
        await record_change(self._conn, plan.shop_id, _resource(plan), plan_row(plan), None)

    async def due(
        self, now: datetime, limit: int, only: tuple[str, str] | None = None
    ) -> Sequence[Plan]:
        mine = and_(plans.c.shop_id == only[0], plans.c.plan_id == only[1]) if only else true()
        rows = await self._conn.execute(
            select(plans)
            .where(
                plans.c.state.in_((PlanState.ACTIVE.value, PlanState.SCHEDULED.value)),
                plans.c.next_check_time <= now,
                mine,
            )
            # Locked in this order: two replicas' ticks never wait on each other in a cycle.
            .order_by(plans.c.next_check_time, plans.c.shop_id, plans.c.plan_id)
            .limit(limit)
            .with_for_update()  # nothing on SQLite: it has one writer
        )
        return [plan_from_row(r) for r in rows.mappings()]

    async def states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PlanState]:
        if not keys:
            return {}
        rows = await self._conn.execute(
            select(plans.c.shop_id, plans.c.plan_id, plans.c.state).where(
                tuple_(plans.c.shop_id, plans.c.plan_id).in_(list(keys))
            )
        )
        return {(r.shop_id, r.plan_id): PlanState(r.state) for r in rows}

    async def advance(self, moves: Sequence[tuple[Plan, SchedulePlace]]) -> None:
        # Only from the place it was read at: of two schedulers, one moves it.
        # A scheduled plan whose first run started is active now (a new
        # revision, so etags held from before are stale); any other state
        # (paused meanwhile, say) stays as it is. One statement for them all.
        if not moves:
            return
        self.changed_shops.update(plan.shop_id for plan, _ in moves)
        scheduled = and_(bindparam("activate"), plans.c.state == PlanState.SCHEDULED.value)
        statement = (
            update(plans)
            .where(
                plans.c.shop_id == bindparam("shop"),
                plans.c.plan_id == bindparam("plan"),
                plans.c.next_check_time == bindparam("read_at"),
            )
            .values(
                schedule_cursor=bindparam("cursor"),
                next_check_time=bindparam("next_check"),
                next_fire_time=bindparam("next_fire"),
                state=case((scheduled, PlanState.ACTIVE.value), else_=plans.c.state),
                revision=case((scheduled, plans.c.revision + 1), else_=plans.c.revision),
            )
        )
        await self._conn.execute(
            statement,
            [
                {
                    "shop": plan.shop_id,
                    "plan": plan.plan_id,
                    "read_at": plan.next_check_time,
                    "cursor": place.cursor,
                    "next_check": place.next_check,
                    "next_fire": place.next_fire,
                    "activate": place.activate,
                }
                for plan, place in moves
            ],
        )


def _resource(plan: Plan) -> str:
    return f"plans/{plan.plan_id}"


def plan_row(plan: Plan) -> dict[str, Any]:
    return {
        "shop_id": plan.shop_id,
        "plan_id": plan.plan_id,
        "display_name": plan.spec.display_name,
        "business_product": plan.spec.product_id or UNSET,  # the column's old name
        "front_office": plan.spec.front_office.value,
        "state": plan.state.value,
        "revision": plan.revision,
        "spec": spec_to_dict(plan.spec),
        "template_id": plan.template_id,
        "create_by": plan.create_by,
        "create_time": plan.create_time,
        "update_by": plan.update_by,
        "update_time": plan.update_time,
        "publish_time": plan.publish_time,
        "end_time": plan.end_time,
        "next_fire_time": plan.next_fire_time,
        "end_reason": plan.end_reason,
        "schedule_cursor": plan.schedule_cursor,
        "next_check_time": plan.next_check_time,
        "approval": approval_to_dict(plan.approval),
    }


def plan_from_row(row: Any) -> Plan:
    return Plan(
        shop_id=row["shop_id"],
        plan_id=row["plan_id"],
        spec=spec_from_dict(row["spec"]),
        state=PlanState(row["state"]),
        revision=row["revision"],
        create_by=row["create_by"],
        create_time=row["create_time"],
        update_by=row["update_by"],
        update_time=row["update_time"],
        template_id=row["template_id"],
        publish_time=row["publish_time"],
        end_time=row["end_time"],
        next_fire_time=row["next_fire_time"],
        end_reason=row["end_reason"],
        schedule_cursor=row["schedule_cursor"],
        next_check_time=row["next_check_time"],
        approval=approval_from_dict(row["approval"]),
    )
