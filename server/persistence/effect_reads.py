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
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
                await for_analysis(conn)
            rows = (
                await conn.execute(_statement(shop_id, plan_id, window, day_offset, zone, postgres))
            ).all()
        members: dict[int, int] = {}
        converted: dict[int, int] = {}
        sales: dict[tuple[int, str], tuple[int, float, float]] = {}
        daily: dict[tuple[int, str], int] = {}
        for kind, group, key, a, b, c in rows:
            g = int(group)
            if kind == "g":
                members[g] = int(a)
            elif kind == "c":
                converted[g] = int(a)
            elif kind == "s":
                sales[(g, str(key))] = (int(a), float(b), float(c))
            else:
                daily[(g, str(key))] = int(a)
        groups = {g: GroupSums(n, converted.get(g, 0)) for g, n in members.items()}
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


async def for_analysis(conn: AsyncConnection) -> None:
    """PostgreSQL, for this transaction only: the hash joins and aggregates
    of a million rows fit in memory instead of spilling to disk, and no
    JIT compilation (it took 0.6 s of a 5 s statement; without it the
    statement over 1.1M outcomes and 1M orders went from 4.5 to 4.2 s)."""
    await conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    await conn.execute(text("SET LOCAL jit = off"))


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
    # Each attributed order once, with its member's group (the same in
    # every run: the hash that chose it does not change).
    attributed = (
        select(
            _o.order_id,
            _o.member_id,
            _o.currency,
            (_o.amount_minor - _o.refunded_minor).label("net"),
            _o.paid_time,
            assigned.c.grp,
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
            attributed.c.grp,
            attributed.c.currency,
            func.count().label("orders"),
            func.sum(attributed.c.net).label("net"),
        )
        .group_by(attributed.c.member_id, attributed.c.grp, attributed.c.currency)
        .cte("per_member")
    )
    net = per_member.c.net
    day = _day(attributed.c.paid_time, day_offset, zone, postgres)

    def number(value: Any) -> Any:
        return cast(value, Float)

    zero = number(literal(0))
    return union_all(
        # Members per group, converted members per group, sales per group
        # and currency, converted members per group and day.
        select(literal("g"), members.c.grp, literal(""), number(func.count()), zero, zero).group_by(
            members.c.grp
        ),
        select(
            literal("c"),
            per_member.c.grp,
            literal(""),
            number(func.count(distinct(per_member.c.member_id))),
            zero,
            zero,
        ).group_by(per_member.c.grp),
        select(
            literal("s"),
            per_member.c.grp,
            per_member.c.currency,
            number(func.sum(per_member.c.orders)),
            number(func.sum(net)),
            number(func.sum(net * net)),
        ).group_by(per_member.c.grp, per_member.c.currency),
        select(
            literal("d"),
            attributed.c.grp,
            day,
            number(func.count(distinct(attributed.c.member_id))),
            zero,
            zero,
        ).group_by(attributed.c.grp, day),
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
