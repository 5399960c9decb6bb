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
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.downstream_ports import GrantedBenefit
from domain.errors import Aborted
from domain.held_benefits import BenefitState, HeldBenefit
from domain.records import MemberRecord, RecordKind
from server.persistence.audit_log import record_change
from server.persistence.database import read
from server.persistence.member_records import record_from_row, record_row
from server.persistence.member_view_reads import page_rows, values_of
from server.persistence.tables import member_benefits, operation_records, run_counters
from server.persistence.upserts import add_counts, insert_new, insert_new_columns


async def add_granted(
    conn: AsyncConnection, plan_id: str, run_id: str, granted: Sequence[GrantedBenefit]
) -> None:
    """Benefits a run granted, as their members now hold them, written column
    by column (no object per benefit on the way); a grant replayed after a
    crash adds nothing."""
    if not granted:
        return
    given = dict(zip(GrantedBenefit._fields, zip(*granted, strict=True), strict=True))
    n = len(granted)
    kinds = {kind: kind.value for kind in set(given["kind"])}
    columns: dict[str, Sequence[Any]] = {
        "shop_id": given["shop_id"],
        "instance_id": given["instance_id"],
        "member_id": given["member_id"],
        "plan_id": (plan_id,) * n,
        "run_id": (run_id,) * n,
        "template_id": given["template_id"],
        "template_version": given["template_version"],
        "kind": [kinds[kind] for kind in given["kind"]],
        "display_name": [name[:200] for name in given["display_name"]],
        "quantity": given["quantity"],
        "state": (BenefitState.UNUSED,) * n,
        "valid_from": given["valid_from"],
        "valid_until": given["valid_until"],
        "grant_time": given["grant_time"],
        "use_time": (None,) * n,
        "order_id": ("",) * n,
    }
    await insert_new_columns(conn, member_benefits, columns, "instance_id", report=False)


async def mark_recovered(conn: AsyncConnection, shop_id: str, instance_ids: Sequence[str]) -> None:
    if instance_ids:
        b = member_benefits.c
        await conn.execute(
            update(member_benefits)
            .where(b.shop_id == shop_id, b.instance_id.in_(list(instance_ids)))
            .values(state=BenefitState.RECOVERED.value)
        )


def recovered_record_id(instance_id: str) -> str:
    return f"{RecordKind.BENEFIT_RECOVERED}#{instance_id}"


def use_record_id(instance_id: str, order_id: str) -> str:
    return f"{RecordKind.BENEFIT_USED}#{instance_id}#{order_id}"


def replenish_record_id(instance_id: str, order_id: str) -> str:
    return f"{RecordKind.BENEFIT_REPLENISHED}#{instance_id}#{order_id}"


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
        if status == BenefitState.EXPIRED:
            query = query.where(b.state == BenefitState.UNUSED.value, b.valid_until <= now)
        elif status == BenefitState.UNUSED:
            query = query.where(
                b.state == BenefitState.UNUSED.value,
                or_(b.valid_until.is_(None), b.valid_until > now),
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
            {m: [_held_of_values(_HELD_VALUES(r)) for r in rows] for m, rows in benefits.items()},
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
                record_row(
                    MemberRecord(
                        record_id=recovered_record_id(h.instance_id),
                        member_id=h.member_id,
                        kind=RecordKind.BENEFIT_RECOVERED,
                        plan_id=h.plan_id,
                        run_id=h.run_id,
                        instance_id=h.instance_id,
                        template_id=h.template_id,
                        occur_time=at,
                        detail={"by": "plan_end"},
                    ),
                    shop_id,
                )
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
        self, held: HeldBenefit, used: HeldBenefit, store_id: str, request_id: str, at: datetime
    ) -> tuple[HeldBenefit, MemberRecord]:
        """`held` now `used` by its order (HeldBenefit.used), its record and
        the plan's `used` counter, once: a second report of the same use
        changes nothing."""
        order_id = used.order_id
        detail = {"order_id": order_id, "store_id": store_id, "request_id": request_id}
        return await self._change(
            held,
            used,
            use_record_id(held.instance_id, order_id),
            RecordKind.BENEFIT_USED,
            detail,
            at,
        )

    async def mark_replenished(
        self,
        held: HeldBenefit,
        back: HeldBenefit,
        reason: str,
        request_id: str,
        at: datetime,
    ) -> tuple[HeldBenefit, MemberRecord]:
        """`held` given `back` to the member (HeldBenefit.given_back), its
        record and the plan's `replenished` counter, once."""
        order_id = held.order_id
        detail = {"order_id": order_id, "reason": reason, "request_id": request_id}
        record_id = replenish_record_id(held.instance_id, order_id)
        return await self._change(held, back, record_id, RecordKind.BENEFIT_REPLENISHED, detail, at)

    async def _change(
        self,
        held: HeldBenefit,
        new: HeldBenefit,
        record_id: str,
        kind: RecordKind,
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
                        b.state == held.state.value,
                        b.order_id == held.order_id,
                    )
                    .values(state=new.state.value, order_id=new.order_id, use_time=new.use_time)
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
                        conn, operation_records, [record_row(record, held.shop_id)], "record_id"
                    )
                    name = "used" if kind is RecordKind.BENEFIT_USED else "replenished"
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
    return {"state": held.state.value, "order_id": held.order_id, "use_time": held.use_time}


async def _record(conn: AsyncConnection, record_id: str) -> MemberRecord | None:
    query = select(operation_records).where(operation_records.c.record_id == record_id)
    row = (await conn.execute(query)).mappings().first()
    return record_from_row(row) if row else None


_HELD_VALUES = values_of(HeldBenefit._fields)
_RECORD_VALUES = values_of([f.name for f in fields(MemberRecord)])


_STATE_AT = HeldBenefit._fields.index("state")


def _held_of_values(values: tuple[Any, ...]) -> HeldBenefit:
    """A page row's values in HeldBenefit's field order (its state stored as text)."""
    found = list(values)
    found[_STATE_AT] = BenefitState(found[_STATE_AT])
    return HeldBenefit(*found)


def _held(row: Any) -> HeldBenefit:
    stored = {c.name: row[c.name] for c in member_benefits.columns}
    return HeldBenefit(**{**stored, "state": BenefitState(stored["state"])})
