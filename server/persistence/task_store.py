"""The engine's state in the database: jobs, and their progress; the leases
on their shards and their failed items are the parts' (shard_leases,
item_failures)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.persistence.audit_log import Audited, record_change
from server.persistence.database import is_sqlite
from server.persistence.launches import job_rows
from server.persistence.tables import (
    CANCELLED,
    DONE,
    PAUSED,
    PENDING,
    RUNNING,
    item_failures,
    jobs,
    shards,
)
from server.persistence.task_batches import failure_counts
from server.persistence.task_failures import ItemFailureStore
from server.persistence.task_leases import ShardLeaseStore
from server.persistence.task_progress import Progress, current_rate, rate_from

# Longer than this, a run barely moves and has no estimate (timedelta
# itself overflows near 10**9 days).
_LONGEST_ETA = 100 * 365 * 86400.0


class TaskStore(ShardLeaseStore, ItemFailureStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(str(engine.url))

    async def create_job(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        cursors: list[str],
        due: datetime,
        now: datetime,
        total: int = 0,
    ) -> str:
        """The job's id; a job is made at most once per (kind, key).
        `total` is the number of items when the kind knows it (for the ETA)."""
        job_id = uuid.uuid4().hex
        job, shard_rows = job_rows(job_id, kind, key, payload, cursors, due, now, total)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(jobs).values(**job))
                await conn.execute(insert(shards), shard_rows)
        except IntegrityError:
            async with self._engine.connect() as conn:
                found = await conn.scalar(
                    select(jobs.c.job_id).where(jobs.c.kind == kind, jobs.c.key == key)
                )
            if found is None:
                raise
            return str(found)
        return job_id

    async def set_state(
        self,
        job_id: str,
        to: str,
        allowed_from: tuple[str, ...],
        now: datetime,
        audited: Audited | None = None,
    ) -> bool:
        """Pause, resume or cancel a job; False if it was in none of `allowed_from`."""
        values: dict[str, Any] = {"state": to, "update_time": now}
        if to == RUNNING:  # the rate is measured afresh from the resumption
            values.update(rate_from(now))
        async with self._engine.begin() as conn:
            before = await conn.scalar(
                select(jobs.c.state).where(jobs.c.job_id == job_id).with_for_update()
            )
            moved = await conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state.in_(allowed_from))
                .values(**values)
            )
            if moved.rowcount != 1:
                return False
            if audited is not None:
                await record_change(
                    conn, audited.shop_id, audited.resource, {"state": before}, {"state": to}
                )
            return True

    async def pause(self, job_id: str, now: datetime) -> bool:
        return await self.set_state(job_id, PAUSED, (PENDING, RUNNING), now)

    async def resume(self, job_id: str, now: datetime) -> bool:
        return await self.set_state(job_id, RUNNING, (PAUSED,), now)

    async def cancel(self, job_id: str, now: datetime, audited: Audited | None = None) -> bool:
        return await self.set_state(job_id, CANCELLED, (PENDING, RUNNING, PAUSED), now, audited)

    async def progress(self, job_id: str, now: datetime) -> Progress:
        async with self._engine.connect() as conn:
            job = (await conn.execute(select(jobs).where(jobs.c.job_id == job_id))).first()
            if job is None:
                raise KeyError(job_id)
            by_state: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(shards.c.state, func.count())
                        .where(shards.c.job_id == job_id)
                        .group_by(shards.c.state)
                    )
                ).all()
            )
            failures = await failure_counts(conn, [job_id])
            reasons = await conn.execute(
                select(item_failures.c.reason, func.count())
                .where(
                    item_failures.c.job_id == job_id,
                    item_failures.c.state.in_(("failed", "dead")),
                )
                .group_by(item_failures.c.reason)
            )
            failed_by_reason = {reason: int(n) for reason, n in reasons}
        rate = current_rate(job.rate, job.rate_time, job.rate_since, now)
        left = max(int(job.total) - int(job.done) - int(job.failed), 0)
        eta: timedelta | None = None
        if job.total and left == 0:
            eta = timedelta(0)
        elif job.total and rate > 0 and job.state == RUNNING and left / rate < _LONGEST_ETA:
            # A rate near zero (a run barely moving) has no estimate to give.
            eta = timedelta(seconds=left / rate)
        return Progress(
            state=job.state,
            total=int(job.total),
            done=int(job.done),
            failed=int(job.failed),
            dead=failures.get("dead", 0),
            retrying=failures.get("retrying", 0),
            shards_done=int(by_state.get(DONE, 0)),
            shards=int(sum(by_state.values())),
            rate=rate,
            eta=eta,
            started=job.rate_since,
            updated=job.update_time,
            failed_by_reason=failed_by_reason,
        )

    async def job(self, job_id: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(jobs).where(jobs.c.job_id == job_id))).mappings().first()
            )
        if row is None:
            raise KeyError(job_id)
        return dict(row)

    async def engine_state(self) -> tuple[int, int, int]:
        """Across every job: (jobs pending or running, items waiting for a
        retry, items dead-lettered) — what operators watch."""
        async with self._engine.connect() as conn:
            in_flight = await conn.scalar(
                select(func.count()).select_from(jobs).where(jobs.c.state.in_([PENDING, RUNNING]))
            )
            rows = await conn.execute(
                select(item_failures.c.state, func.count())
                .where(item_failures.c.state.in_(["retrying", "dead"]))
                .group_by(item_failures.c.state)
            )
            counts = {state: int(n) for state, n in rows}
        return int(in_flight or 0), counts.get("retrying", 0), counts.get("dead", 0)

    async def set_total(self, job_id: str, total: int) -> None:
        """The number of items, once the kind knows it (for progress and ETA)."""
        async with self._engine.begin() as conn:
            await conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(total=total))

    async def in_flight(self, job_id: str, now: datetime) -> int:
        """Batches of a job that may still be finishing (after a pause or a
        cancel): shards a worker holds a live lease on, and retrying items
        whose next try lies ahead — a sweeper holds the items it claimed that
        way, indistinguishable from a back-off, so both count."""
        async with self._engine.connect() as conn:
            leased = await conn.scalar(
                select(func.count()).where(
                    shards.c.job_id == job_id,
                    shards.c.state != DONE,
                    shards.c.lease_owner != "",
                    shards.c.lease_until > now,
                )
            )
            held = await conn.scalar(
                select(func.count()).where(
                    item_failures.c.job_id == job_id,
                    item_failures.c.state == "retrying",
                    item_failures.c.next_retry_time > now,
                )
            )
        return int(leased or 0) + int(held or 0)
