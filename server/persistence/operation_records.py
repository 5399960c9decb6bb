"""The user operation records of runs, and the counters they move: every
counter moves in the transaction that inserts the row it counts, and rows
are inserted once, so a batch that runs twice never counts twice."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.downstream_ports import GrantedBenefit
from domain.records import RecordKind
from domain.runs import Run, RunKind
from server.persistence.member_benefits import add_granted
from server.persistence.member_decisions import give_back_contacts, release
from server.persistence.tables import operation_records, plan_budgets, plan_runs, run_counters
from server.persistence.upserts import add_counts, insert_new_columns


class Record(NamedTuple):
    record_id: str  # the idempotency key of what happened
    member_id: str
    kind: RecordKind
    instance_id: str = ""
    template_id: str = ""
    detail: dict[str, Any] | None = None
    granted: GrantedBenefit | None = None  # a benefit granted: the member now holds it


class OperationRecords:
    """Part of RunStore: what runs did, and their counters."""

    _engine: AsyncEngine

    async def record(
        self,
        run: Run,
        records: list[Record],
        now: datetime,
        extra: dict[str, int] | None = None,
        released: dict[str, str] | None = None,
        uncontacted: list[str] | None = None,
    ) -> None:
        """Write user operation records once each; counters grow by what was
        new. Members `released` (failed for good, by reason) give back what
        they held, in the same transaction; members `uncontacted` (not
        messaged after all) give back their contact slots."""
        ids, members, kinds, instances, templates, details, _ = (
            zip(*records, strict=True) if records else ((),) * len(Record._fields)
        )
        n = len(ids)
        columns = {
            "record_id": ids,
            "shop_id": (run.shop_id,) * n,
            "member_id": members,
            "kind": kinds,
            "plan_id": (run.plan_id,) * n,
            "run_id": (run.run_id,) * n,
            "instance_id": instances,
            "template_id": templates,
            "detail": [d or {} for d in details],
            "occur_time": (now,) * n,
        }
        async with self._engine.begin() as conn:
            new = await insert_new_columns(conn, operation_records, columns, "record_id")
            granted = [r.granted for r in records if r.granted is not None]
            await add_granted(conn, run.plan_id, run.run_id, granted)
            counts = dict(extra or {})
            # Counted in C: an enum member hashes in Python, once per record.
            new_kinds = [k for i, k in zip(ids, kinds, strict=True) if i in new]
            for kind, name in _COUNTED.items():
                if n := new_kinds.count(kind):
                    counts[name] = counts.get(name, 0) + n
            await add_counts(conn, run_counters, {"run_id": run.run_id}, counts)
            await release(conn, run, released or {})
            await give_back_contacts(conn, run, uncontacted or [])

    async def counters(self, run_id: str) -> dict[str, int]:
        async with self._engine.connect() as conn:
            return await _summed(conn, run_counters.c.run_id == run_id)

    async def plan_totals(
        self, shop_id: str, plan_id: str, test: bool = False
    ) -> tuple[int, dict[str, int], int]:
        """(runs, counters summed over them, budget units used): of the plan's
        runs, or (`test`) of its test runs, which are counted apart."""
        kind = plan_runs.c.kind == RunKind.TEST.value
        async with self._engine.connect() as conn:
            runs = select(plan_runs.c.run_id).where(
                plan_runs.c.shop_id == shop_id,
                plan_runs.c.plan_id == plan_id,
                plan_runs.c.skip_reason == "",  # a skipped fire is no run
                kind if test else ~kind,
            )
            count = int(await conn.scalar(select(func.count()).select_from(runs.subquery())) or 0)
            counters = await _summed(conn, run_counters.c.run_id.in_(runs))
            used = await conn.scalar(
                select(plan_budgets.c.used).where(
                    plan_budgets.c.shop_id == shop_id, plan_budgets.c.plan_id == plan_id
                )
            )
        return count, counters, int(used or 0)


async def _summed(conn: AsyncConnection, runs: Any) -> dict[str, int]:
    """Counters summed over the runs `runs` selects."""
    rows = await conn.execute(
        select(run_counters.c.name, func.sum(run_counters.c.value))
        .where(runs)
        .group_by(run_counters.c.name)
    )
    return {name: int(value) for name, value in rows}


_COUNTED = {
    RecordKind.BENEFIT_GRANTED: "granted",
    RecordKind.MESSAGE_SENT: "sent",
    RecordKind.BENEFIT_RECOVERED: "recovered",
}
