"""Reading a member's user operation records (the timeline the runs and the
front offices write), newest first, through the (shop, member, time) index."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.records import MemberRecord, RecordKind
from server.persistence.tables import operation_records


def record_row(record: MemberRecord, shop_id: str) -> dict[str, Any]:
    return {
        "record_id": record.record_id,
        "shop_id": shop_id,
        "member_id": record.member_id,
        "kind": record.kind.value,
        "plan_id": record.plan_id,
        "run_id": record.run_id,
        "instance_id": record.instance_id,
        "template_id": record.template_id,
        "detail": record.detail,
        "occur_time": record.occur_time,
    }


def record_from_row(row: Any) -> MemberRecord:
    return MemberRecord(
        record_id=row["record_id"],
        member_id=row["member_id"],
        kind=RecordKind(row["kind"]),
        plan_id=row["plan_id"],
        run_id=row["run_id"],
        instance_id=row["instance_id"],
        template_id=row["template_id"],
        occur_time=row["occur_time"],
        detail=dict(row["detail"] or {}),
        shop_id=row["shop_id"],
    )


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
