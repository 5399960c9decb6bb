"""Runs in the database: the runs themselves, read and listed. What each
decided per member is member_decisions; the user operation records and the
counters are operation_records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.runs import Run, RunKind, RunTrigger
from server.persistence.audit_log import record_change
from server.persistence.launches import run_resource, run_row
from server.persistence.member_decisions import MemberDecisions
from server.persistence.operation_records import OperationRecords
from server.persistence.tables import jobs, plan_runs

# The state of a skipped fire among the runs (it has no job).
SKIPPED = "skipped"


class RunStore(MemberDecisions, OperationRecords):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, run: Run) -> Run:
        """The run, or the one already made under its id."""
        try:
            row = run_row(run)
            async with self._engine.begin() as conn:
                await conn.execute(plan_runs.insert().values(**row))
                await record_change(conn, run.shop_id, run_resource(run), None, row)
            return run
        except IntegrityError:
            found = await self._find(plan_runs.c.run_id == run.run_id)
            if found is None:
                raise
            return found

    async def set_job(self, run_id: str, job_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(plan_runs).where(plan_runs.c.run_id == run_id).values(job_id=job_id)
            )

    async def get(self, shop_id: str, plan_id: str, run_id: str) -> Run | None:
        return await self._find(
            and_(
                plan_runs.c.shop_id == shop_id,
                plan_runs.c.plan_id == plan_id,
                plan_runs.c.run_id == run_id,
            )
        )

    async def page(
        self,
        shop_id: str,
        plan_id: str,
        state: str,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Run]:
        """Newest first; only runs whose job is in `state`, when given."""
        query = select(plan_runs).where(
            plan_runs.c.shop_id == shop_id, plan_runs.c.plan_id == plan_id
        )
        if state == SKIPPED:
            query = query.where(plan_runs.c.skip_reason != "")
        elif state:
            query = query.join(jobs, jobs.c.job_id == plan_runs.c.job_id).where(
                jobs.c.state == state
            )
        if after is not None:
            at, run_id = after
            query = query.where(
                or_(
                    plan_runs.c.create_time < at,
                    and_(plan_runs.c.create_time == at, plan_runs.c.run_id < run_id),
                )
            )
        query = query.order_by(plan_runs.c.create_time.desc(), plan_runs.c.run_id.desc())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).mappings().all()
        return [_run(r) for r in rows]

    async def job_ids(self, shop_id: str, plan_id: str, kind: RunKind | None = None) -> list[str]:
        """The jobs of a plan's runs (of one kind, when given; but test runs)."""
        query = select(plan_runs.c.job_id).where(
            plan_runs.c.shop_id == shop_id,
            plan_runs.c.plan_id == plan_id,
            plan_runs.c.job_id != "",
            plan_runs.c.kind != RunKind.TEST.value,
        )
        if kind is not None:
            query = query.where(plan_runs.c.kind == kind.value)
        async with self._engine.connect() as conn:
            return [r[0] for r in await conn.execute(query)]

    async def unfinished(self, shop_id: str, plan_id: str, ended: tuple[str, ...]) -> int:
        """The plan's delivery runs not ended yet: a job in another state than
        `ended`, or a run whose job is still being made."""
        query = (
            select(func.count())
            .select_from(plan_runs.outerjoin(jobs, jobs.c.job_id == plan_runs.c.job_id))
            .where(
                plan_runs.c.shop_id == shop_id,
                plan_runs.c.plan_id == plan_id,
                plan_runs.c.kind == RunKind.DELIVERY.value,
                plan_runs.c.skip_reason == "",
                or_(jobs.c.state.is_(None), jobs.c.state.not_in(ended)),
            )
        )
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def recoveries_of(self, run: Run) -> list[str]:
        """The recovery runs that take back what `run` granted."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(plan_runs.c.run_id).where(
                    plan_runs.c.shop_id == run.shop_id,
                    plan_runs.c.plan_id == run.plan_id,
                    plan_runs.c.target_run_id == run.run_id,
                )
            )
            return [r[0] for r in rows]

    async def _find(self, where: Any) -> Run | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(plan_runs).where(where))).mappings().first()
        return None if row is None else _run(row)


def _run(row: Any) -> Run:
    return Run(
        run_id=row["run_id"],
        shop_id=row["shop_id"],
        plan_id=row["plan_id"],
        kind=RunKind(row["kind"]),
        trigger=RunTrigger(row["run_trigger"]),
        fire_time=row["fire_time"],
        create_time=row["create_time"],
        job_id=row["job_id"],
        target_run_id=row["target_run_id"],
        skip_reason=row["skip_reason"],
        resume_time=row["resume_time"],
        grants=row["grants"],
    )
