"""Reading a member's user operation records (the timeline the runs and the
front offices write), newest first, through the (shop, member, time) index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.persistence.tables import operation_records


@dataclass(frozen=True)
class MemberRecord:
    record_id: str
    member_id: str
    kind: str
    plan_id: str
    run_id: str
    instance_id: str
    template_id: str
    occur_time: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    shop_id: str = ""

    def row(self, shop_id: str) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "shop_id": shop_id,
            "member_id": self.member_id,
            "kind": self.kind,
            "plan_id": self.plan_id,
            "run_id": self.run_id,
            "instance_id": self.instance_id,
            "template_id": self.template_id,
            "detail": self.detail,
            "occur_time": self.occur_time,
        }


def record_from_row(row: Any) -> MemberRecord:
    return MemberRecord(
        record_id=row["record_id"],
        member_id=row["member_id"],
        kind=row["kind"],
        plan_id=row["plan_id"],
        run_id=row["run_id"],
        instance_id=row["instance_id"],
        template_id=row["template_id"],
        occur_time=row["occur_time"],
        detail=dict(row["detail"] or {}),
        shop_id=row["shop_id"],
    )


def in_list(ids: Sequence[str]) -> list[str]:
    """Ids for an `IN` list, padded (repeating the last) to a power of two,
    so that a batch's statement is one of a few texts the database and the
    driver have prepared already."""
    size = 1 << max(len(ids) - 1, 0).bit_length()
    return [*ids, *[ids[-1]] * (size - len(ids))] if ids else []


def first_per_member(rows: Any) -> dict[str, list[Any]]:
    """Rows of a per-member ranked query, grouped by member in rank order."""
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(row["member_id"], []).append(row)
    return out


_r = operation_records.c
# The member view's question for a batch of members, built once: each
# member's latest records, newest first, through the (shop, member, time)
# index. Only the values change per call.
_ranked_records = (
    select(
        operation_records,
        func.row_number()
        .over(partition_by=_r.member_id, order_by=(_r.occur_time.desc(), _r.record_id.desc()))
        .label("rank"),
    )
    .where(_r.shop_id == bindparam("shop"), _r.member_id.in_(bindparam("members", expanding=True)))
    .subquery()
)
_RECENT = (
    select(_ranked_records)
    .where(_ranked_records.c.rank <= bindparam("limit"))
    .order_by(_ranked_records.c.member_id, _ranked_records.c.rank)
)


async def recent_records(
    conn: AsyncConnection, shop_id: str, member_ids: Sequence[str], limit: int
) -> dict[str, list[MemberRecord]]:
    """Each member's latest `limit` records, newest first."""
    values = {"shop": shop_id, "members": in_list(member_ids), "limit": limit}
    rows = (await conn.execute(_RECENT, values)).mappings()
    return {
        member: [record_from_row(r) for r in found]
        for member, found in first_per_member(rows).items()
    }


class RecordReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def page(
        self,
        shop_id: str,
        member_id: str,
        kinds: Sequence[str],
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[MemberRecord]:
        """Newest first; `before` is the (time, record id) the last page ended at."""
        r = operation_records.c
        query = select(operation_records).where(r.shop_id == shop_id, r.member_id == member_id)
        if kinds:
            query = query.where(r.kind.in_(list(kinds)))
        if before is not None:
            at, record_id = before
            query = query.where(
                or_(r.occur_time < at, and_(r.occur_time == at, r.record_id < record_id))
            )
        query = query.order_by(r.occur_time.desc(), r.record_id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [record_from_row(row) for row in rows]
