"""The plan benefits members hold (table member_benefits): written by the
runs that grant them, changed by the front offices' reports of use and
replenishment and by recovery, read by the shopper's side.

Every change of state goes with its operation record in one transaction,
and only a new record changes the state and the plan's counters: a report
that arrives twice (a retry, a replay after a crash) changes nothing the
second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.downstream_ports import GrantedBenefit
from domain.errors import Aborted
from server.persistence.audit_log import record_change
from server.persistence.database import read
from server.persistence.tables import member_benefits, operation_records, run_counters
from server.persistence.upserts import add_counts, insert_new
from server.scenario.page_reads import page_rows, values_of
from server.scenario.records import MemberRecord, record_from_row

UNUSED, USED, RECOVERED, EXPIRED = "unused", "used", "recovered", "expired"
STATUSES = (UNUSED, USED, EXPIRED, RECOVERED)
USED_RECORD, REPLENISHED_RECORD = "benefit_used", "benefit_replenished"
RECOVERED_RECORD = "benefit_recovered"


@dataclass(frozen=True)
class HeldBenefit:
    shop_id: str
    instance_id: str
    member_id: str
    plan_id: str
    run_id: str
    template_id: str
    template_version: int
    kind: str  # domain.plan.BenefitKind name, e.g. "COUPON"
    display_name: str
    quantity: int
    state: str  # unused | used | recovered
    valid_from: datetime | None
    valid_until: datetime | None
    grant_time: datetime
    use_time: datetime | None = None
    order_id: str = ""

    def status(self, now: datetime) -> str:
        """The state as a member sees it: an unused benefit past its end is expired."""
        if self.state == UNUSED and self.valid_until is not None and self.valid_until <= now:
            return EXPIRED
        return self.state

    def row(self) -> dict[str, Any]:
        return {c.name: getattr(self, c.name) for c in member_benefits.columns}


def held_of(plan_id: str, run_id: str, granted: GrantedBenefit) -> HeldBenefit:
    """A benefit a run granted, as the member now holds it."""
    return HeldBenefit(
        shop_id=granted.shop_id,
        instance_id=granted.instance_id,
        member_id=granted.member_id,
        plan_id=plan_id,
        run_id=run_id,
        template_id=granted.template_id,
        template_version=granted.template_version,
        kind=granted.kind.value,
        display_name=granted.display_name[:200],
        quantity=granted.quantity,
        state=UNUSED,
        valid_from=granted.valid_from,
        valid_until=granted.valid_until,
        grant_time=granted.grant_time,
    )


async def add_held(conn: AsyncConnection, held: Sequence[HeldBenefit]) -> None:
    """Benefits a run granted; a grant replayed after a crash adds nothing."""
    if held:
        await insert_new(conn, member_benefits, [h.row() for h in held], "instance_id")


async def mark_recovered(conn: AsyncConnection, shop_id: str, instance_ids: Sequence[str]) -> None:
    if instance_ids:
        b = member_benefits.c
        await conn.execute(
            update(member_benefits)
            .where(b.shop_id == shop_id, b.instance_id.in_(list(instance_ids)))
            .values(state=RECOVERED)
        )


def recovered_record_id(instance_id: str) -> str:
    return f"{RECOVERED_RECORD}#{instance_id}"


def use_record_id(instance_id: str, order_id: str) -> str:
    return f"{USED_RECORD}#{instance_id}#{order_id}"


def replenish_record_id(instance_id: str, order_id: str) -> str:
    return f"{REPLENISHED_RECORD}#{instance_id}#{order_id}"


class MemberBenefits:
    def __init__(
        self, engine: AsyncEngine, now: Callable[[], datetime], reads: AsyncEngine
    ) -> None:
        self._engine = engine
        self._now = now
        # The pages' reads (server.persistence.database.create_read_engine).
        self._reads = reads

    async def get(self, shop_id: str, member_id: str, instance_id: str) -> HeldBenefit | None:
        b = member_benefits.c
        query = select(member_benefits).where(
            b.shop_id == shop_id, b.instance_id == instance_id, b.member_id == member_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _held(row) if row else None

    async def page(
        self,
        shop_id: str,
        member_id: str,
        status: str,
        plan_id: str,
        before: tuple[datetime, str] | None,
        limit: int,
        now: datetime,
    ) -> list[HeldBenefit]:
        """Newest grant first; `status` and `plan_id` filter when not empty."""
        b = member_benefits.c
        query = select(member_benefits).where(b.shop_id == shop_id, b.member_id == member_id)
        if plan_id:
            query = query.where(b.plan_id == plan_id)
        if status == EXPIRED:
            query = query.where(b.state == UNUSED, b.valid_until <= now)
        elif status == UNUSED:
            query = query.where(
                b.state == UNUSED, or_(b.valid_until.is_(None), b.valid_until > now)
            )
        elif status:
            query = query.where(b.state == status)
        if before is not None:
            at, instance_id = before
            query = query.where(
                or_(b.grant_time < at, and_(b.grant_time == at, b.instance_id < instance_id))
            )
        query = query.order_by(b.grant_time.desc(), b.instance_id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_held(r) for r in rows]

    async def pages(
        self,
        shop_id: str,
        member_ids: Sequence[str],
        now: datetime,
        benefit_limit: int,
        split: Sequence[str],
        record_limit: int,
    ) -> tuple[dict[str, list[HeldBenefit]], dict[str, list[MemberRecord]]]:
        """What the members' pages show from here, for all of them in one
        statement. Per member: the usable benefits, soonest expiry first (no
        expiry last), holding the first `benefit_limit` both with and without
        the `split` kinds (a front office that hides them filters); and the
        latest `record_limit` records."""

        async def both(conn: AsyncConnection) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
            return await page_rows(
                conn, shop_id, member_ids, now, benefit_limit, split, record_limit
            )

        benefits, records = await read(self._reads, both)
        return (
            {m: [HeldBenefit(*_HELD_VALUES(r)) for r in rows] for m, rows in benefits.items()},
            {m: [MemberRecord(*_RECORD_VALUES(r)) for r in rows] for m, rows in records.items()},
        )

    async def record(self, shop_id: str, record_id: str) -> MemberRecord | None:
        async with self._engine.connect() as conn:
            found = await _record(conn, record_id)
        return found if found and found.shop_id == shop_id else None

    async def taken_back(self, shop_id: str, instance_ids: list[str]) -> None:
        """Benefits an ended plan took back at the benefit platform: recovered
        here too, each with its record (the id a recovery run would write, so
        that the two never both count one instance) and the plan's count."""
        if not instance_ids:
            return
        b = member_benefits.c
        at = self._now()
        async with self._engine.begin() as conn:
            found = [
                _held(row)
                for row in (
                    await conn.execute(
                        select(member_benefits).where(
                            b.shop_id == shop_id, b.instance_id.in_(instance_ids)
                        )
                    )
                ).mappings()
            ]
            records = [
                MemberRecord(
                    record_id=recovered_record_id(h.instance_id),
                    member_id=h.member_id,
                    kind=RECOVERED_RECORD,
                    plan_id=h.plan_id,
                    run_id=h.run_id,
                    instance_id=h.instance_id,
                    template_id=h.template_id,
                    occur_time=at,
                    detail={"by": "plan_end"},
                ).row(shop_id)
                for h in found
            ]
            new = await insert_new(conn, operation_records, records, "record_id")
            await mark_recovered(conn, shop_id, [h.instance_id for h in found])
            per_run = Counter(h.run_id for h in found if recovered_record_id(h.instance_id) in new)
            for run_id, n in per_run.items():
                await add_counts(conn, run_counters, {"run_id": run_id}, {"recovered": n})
            per_plan = Counter(
                h.plan_id for h in found if recovered_record_id(h.instance_id) in new
            )
            for plan_id, n in per_plan.items():
                await record_change(
                    conn, shop_id, f"plans/{plan_id}", None, {"benefits_taken_back": n}
                )

    async def mark_used(
        self, held: HeldBenefit, order_id: str, store_id: str, request_id: str, at: datetime
    ) -> tuple[HeldBenefit, MemberRecord]:
        """The benefit used by the order, its record, and the plan's `used`
        counter, once: a second report of the same use changes nothing."""
        used = replace(held, state=USED, order_id=order_id, use_time=at)
        detail = {"order_id": order_id, "store_id": store_id, "request_id": request_id}
        return await self._change(
            held, used, use_record_id(held.instance_id, order_id), USED_RECORD, detail, at
        )

    async def mark_replenished(
        self, held: HeldBenefit, order_id: str, reason: str, request_id: str, at: datetime
    ) -> tuple[HeldBenefit, MemberRecord]:
        """The benefit given back to the member, its record and the plan's
        `replenished` counter, once."""
        back = replace(held, state=UNUSED, order_id="", use_time=None)
        detail = {"order_id": order_id, "reason": reason, "request_id": request_id}
        record_id = replenish_record_id(held.instance_id, order_id)
        return await self._change(held, back, record_id, REPLENISHED_RECORD, detail, at)

    async def _change(
        self,
        held: HeldBenefit,
        new: HeldBenefit,
        record_id: str,
        kind: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> tuple[HeldBenefit, MemberRecord]:
        record = MemberRecord(
            record_id=record_id,
            member_id=held.member_id,
            kind=kind,
            plan_id=held.plan_id,
            run_id=held.run_id,
            instance_id=held.instance_id,
            template_id=held.template_id,
            occur_time=at,
            detail=detail,
        )
        b = member_benefits.c
        async with self._engine.begin() as conn:
            if await _record(conn, record_id) is None:
                # Only from the state the caller saw; the row lock makes a
                # concurrent change wait, then find the state moved on.
                changed = await conn.execute(
                    update(member_benefits)
                    .where(
                        b.shop_id == held.shop_id,
                        b.instance_id == held.instance_id,
                        b.state == held.state,
                        b.order_id == held.order_id,
                    )
                    .values(state=new.state, order_id=new.order_id, use_time=new.use_time)
                )
                if changed.rowcount == 1:
                    await record_change(
                        conn,
                        held.shop_id,
                        f"members/{held.member_id}/benefits/{held.instance_id}",
                        _changing(held),
                        _changing(new),
                    )
                    await insert_new(
                        conn, operation_records, [record.row(held.shop_id)], "record_id"
                    )
                    name = "used" if kind == USED_RECORD else "replenished"
                    await add_counts(conn, run_counters, {"run_id": held.run_id}, {name: 1})
            stored = await _record(conn, record_id)
            if stored is None:
                raise Aborted(
                    f"benefit {held.instance_id!r} changed while this call ran; read it again",
                    reason="BENEFIT_CHANGED",
                )
            current = (
                (
                    await conn.execute(
                        select(member_benefits).where(
                            b.shop_id == held.shop_id, b.instance_id == held.instance_id
                        )
                    )
                )
                .mappings()
                .one()
            )
        return _held(current), stored


def _changing(held: HeldBenefit) -> dict[str, Any]:
    """What use and give-back change."""
    return {"state": held.state, "order_id": held.order_id, "use_time": held.use_time}


async def _record(conn: AsyncConnection, record_id: str) -> MemberRecord | None:
    query = select(operation_records).where(operation_records.c.record_id == record_id)
    row = (await conn.execute(query)).mappings().first()
    return record_from_row(row) if row else None


_HELD_VALUES = values_of([f.name for f in fields(HeldBenefit)])
_RECORD_VALUES = values_of([f.name for f in fields(MemberRecord)])


def _held(row: Any) -> HeldBenefit:
    return HeldBenefit(**{c.name: row[c.name] for c in member_benefits.columns})
