"""The sums a plan's effect is computed from, in the database (docs/outcomes.md):
per group (treatment, holdout) its members and converted members, and per
group and currency its attributed orders, net sales and net sales squared
per member; converted members per day. Only these few rows leave the
database, whatever the number of members and orders.

A member is assigned to the plan's group in each delivery run that
considered him (test runs and listed ids nobody knows are not measured); an
order of his counts when it was paid within the attribution window after an
assignment, and counts once however many assignments it follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import outcomes
from domain.effect import Sample
from domain.runs import RunKind, Skip
from server.persistence.tables import orders, plan_runs, run_members

_rm, _pr, _o = run_members.c, plan_runs.c, orders.c
TREATMENT, HOLDOUT = 0, 1


@dataclass(frozen=True)
class GroupSums:
    members: int = 0
    converted: int = 0


@dataclass(frozen=True)
class SalesSums:
    orders: int
    per_member: Sample  # net sales per member of the group, zeros included


@dataclass(frozen=True)
class EffectSums:
    groups: dict[int, GroupSums]
    sales: dict[tuple[int, str], SalesSums]  # (group, currency)
    daily: dict[tuple[int, str], int]  # (group, day) -> members converting that day


class EffectReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def sums(
        self, shop_id: str, plan_id: str, window: timedelta, day_offset: timedelta, zone: str
    ) -> EffectSums:
        async with self._engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            assigned = (
                select(
                    _rm.member_id.label("member_id"),
                    case((_rm.outcome == outcomes.HELD_OUT, HOLDOUT), else_=TREATMENT).label("grp"),
                    _pr.fire_time.label("t"),
                )
                .join(plan_runs, _pr.run_id == _rm.run_id)
                .where(
                    _pr.shop_id == shop_id,
                    _pr.plan_id == plan_id,
                    _pr.kind == RunKind.DELIVERY.value,
                    _rm.outcome != f"{outcomes.SKIP}{Skip.UNKNOWN_MEMBER.value}",
                )
                .cte("assigned")
            )
            members = (
                select(assigned.c.member_id, func.max(assigned.c.grp).label("grp"))
                .group_by(assigned.c.member_id)
                .cte("members")
            )
            attributed = (
                select(
                    _o.order_id,
                    _o.member_id,
                    _o.currency,
                    (_o.amount_minor - _o.refunded_minor).label("net"),
                    _o.paid_time,
                )
                .distinct()
                .join(assigned, assigned.c.member_id == _o.member_id)
                .where(
                    _o.shop_id == shop_id,
                    _o.paid_time >= assigned.c.t,
                    _o.paid_time < _plus(assigned.c.t, window, postgres),
                )
                .cte("attributed")
            )
            converted = select(attributed.c.member_id).distinct().subquery()
            group_rows = await conn.execute(
                select(members.c.grp, func.count(), func.count(converted.c.member_id))
                .select_from(
                    members.outerjoin(converted, converted.c.member_id == members.c.member_id)
                )
                .group_by(members.c.grp)
            )
            groups = {int(g): GroupSums(int(n), int(c)) for g, n, c in group_rows}
            per_member = (
                select(
                    attributed.c.member_id,
                    attributed.c.currency,
                    func.count().label("orders"),
                    func.sum(attributed.c.net).label("net"),
                )
                .group_by(attributed.c.member_id, attributed.c.currency)
                .subquery()
            )
            net = per_member.c.net
            sales_rows = await conn.execute(
                select(
                    members.c.grp,
                    per_member.c.currency,
                    func.sum(per_member.c.orders),
                    func.sum(net),
                    func.sum(net * net),
                )
                .join(members, members.c.member_id == per_member.c.member_id)
                .group_by(members.c.grp, per_member.c.currency)
            )
            sales = {
                (int(g), cur): SalesSums(
                    int(n),
                    Sample(groups.get(int(g), GroupSums()).members, float(total), float(squares)),
                )
                for g, cur, n, total, squares in sales_rows
            }
            day = _day(attributed.c.paid_time, day_offset, zone, postgres)
            daily_rows = await conn.execute(
                select(members.c.grp, day, func.count(distinct(attributed.c.member_id)))
                .join(members, members.c.member_id == attributed.c.member_id)
                .group_by(members.c.grp, day)
            )
            daily = {(int(g), str(d)): int(n) for g, d, n in daily_rows}
        return EffectSums(groups, sales, daily)


def _plus(instant: Any, seconds: timedelta, postgres: bool) -> ColumnElement[Any]:
    """`instant` + a fixed duration, as each database spells it (SQLite keeps
    instants as text its strftime reads)."""
    if postgres:
        return instant + literal(seconds)  # type: ignore[no-any-return]
    return func.strftime("%Y-%m-%d %H:%M:%f", instant, f"+{int(seconds.total_seconds())} seconds")


def _day(instant: Any, offset: timedelta, zone: str, postgres: bool) -> ColumnElement[Any]:
    """The local day of an instant: in the zone on PostgreSQL; on SQLite,
    which knows no zones, at the zone's offset of today."""
    if postgres:
        return func.to_char(func.timezone(zone, instant), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", instant, f"{int(offset.total_seconds()):+d} seconds")
