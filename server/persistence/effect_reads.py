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

from sqlalchemy import (
    ColumnElement,
    Float,
    case,
    cast,
    distinct,
    func,
    literal,
    select,
    text,
    union_all,
)
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
        """One statement: the assignments and the attributed orders are
        computed once and feed the three kinds of rows (groups, sales, days)."""
        async with self._engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                # The hash joins and aggregates of a million rows fit in
                # memory instead of spilling to disk (this transaction only).
                await conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
            rows = (
                await conn.execute(_statement(shop_id, plan_id, window, day_offset, zone, postgres))
            ).all()
        groups: dict[int, GroupSums] = {}
        sales: dict[tuple[int, str], tuple[int, float, float]] = {}
        daily: dict[tuple[int, str], int] = {}
        for kind, group, key, a, b, c in rows:
            g = int(group)
            if kind == "g":
                groups[g] = GroupSums(int(a), int(b))
            elif kind == "s":
                sales[(g, str(key))] = (int(a), float(b), float(c))
            else:
                daily[(g, str(key))] = int(a)
        return EffectSums(
            groups,
            {
                key: SalesSums(n, Sample(groups.get(key[0], GroupSums()).members, total, squares))
                for key, (n, total, squares) in sales.items()
            },
            daily,
        )


# work_mem for the effect's statement on PostgreSQL (the server's default is 4 MB).
WORK_MEM = "128MB"


def _statement(
    shop_id: str, plan_id: str, window: timedelta, day_offset: timedelta, zone: str, postgres: bool
) -> Any:
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
    per_member = (
        select(
            attributed.c.member_id,
            attributed.c.currency,
            func.count().label("orders"),
            func.sum(attributed.c.net).label("net"),
        )
        .group_by(attributed.c.member_id, attributed.c.currency)
        .cte("per_member")
    )
    converted = select(per_member.c.member_id).distinct().subquery()
    net = per_member.c.net
    day = _day(attributed.c.paid_time, day_offset, zone, postgres)

    def number(value: Any) -> Any:
        return cast(value, Float)

    return union_all(
        select(
            literal("g"),
            members.c.grp,
            literal(""),
            number(func.count()),
            number(func.count(converted.c.member_id)),
            number(literal(0)),
        )
        .select_from(members.outerjoin(converted, converted.c.member_id == members.c.member_id))
        .group_by(members.c.grp),
        select(
            literal("s"),
            members.c.grp,
            per_member.c.currency,
            number(func.sum(per_member.c.orders)),
            number(func.sum(net)),
            number(func.sum(net * net)),
        )
        .join(members, members.c.member_id == per_member.c.member_id)
        .group_by(members.c.grp, per_member.c.currency),
        select(
            literal("d"),
            members.c.grp,
            day,
            number(func.count(distinct(attributed.c.member_id))),
            number(literal(0)),
            number(literal(0)),
        )
        .join(members, members.c.member_id == attributed.c.member_id)
        .group_by(members.c.grp, day),
    )


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
