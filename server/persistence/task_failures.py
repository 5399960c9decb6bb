"""Items that failed: counted, retried when their time comes, revived
from the dead letters, listed."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.persistence.audit_log import Audited, record_change
from server.persistence.tables import CANCELLED, PAUSED, RUNNING, item_failures, jobs
from server.persistence.task_batches import (
    Failure,
    failure_counts,
    finish_if_complete,
    record_batch,
)
from server.persistence.task_progress import rate_from


class ItemFailureStore:
    """Part of TaskStore: the failed items of jobs."""

    _engine: AsyncEngine
    _sqlite: bool

    async def retry_dead(
        self,
        job_id: str,
        now: datetime,
        states: tuple[str, ...] = ("dead",),
        audited: Audited | None = None,
    ) -> int:
        """Put a job's dead-lettered items (or, with states, also those that
        failed for good, once their cause is fixed) back in line now. A paused
        or cancelled job is left alone (0): reviving restarts the job."""
        async with self._engine.begin() as conn:
            # Locks the job's row first, so a pause or cancel either lands
            # before (and nothing is revived) or waits for this to commit.
            open_job = await conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state.not_in((PAUSED, CANCELLED)))
                .values(update_time=now)
            )
            if open_job.rowcount != 1:
                return 0
            revived = await conn.execute(
                update(item_failures)
                .where(item_failures.c.job_id == job_id, item_failures.c.state.in_(states))
                .values(state="retrying", attempts=0, next_retry_time=now)
            )
            count = int(revived.rowcount)
            if audited is not None:  # asked for, even when nothing had failed
                await record_change(
                    conn, audited.shop_id, audited.resource, None, {"items_retried": count}
                )
            if count:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.job_id == job_id)
                    .values(
                        state=RUNNING,
                        failed=jobs.c.failed - count,
                        update_time=now,
                        **rate_from(now),
                    )
                )
            return count

    async def failure_counts(self, job_ids: list[str]) -> dict[str, int]:
        """Items by failure state (retrying, failed, dead) over these jobs."""
        async with self._engine.connect() as conn:
            return await failure_counts(conn, job_ids)

    async def claim_retries(
        self, now: datetime, hold: timedelta, limit: int, kinds: Collection[str]
    ) -> list[tuple[str, str, dict[str, Any], Failure]]:
        """Retrying items whose time has come, each claimed by moving its
        next retry time past `hold` (so two sweepers never take the same)."""
        query = (
            select(item_failures, jobs.c.kind, jobs.c.payload)
            .join(jobs, jobs.c.job_id == item_failures.c.job_id)
            .where(
                item_failures.c.state == "retrying",
                item_failures.c.next_retry_time <= now,
                jobs.c.state == RUNNING,
                jobs.c.kind.in_(list(kinds)),
            )
            .order_by(item_failures.c.next_retry_time)
            .limit(limit)
        )
        claimed = []
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
            for r in rows:
                taken = await conn.execute(
                    update(item_failures)
                    .where(
                        item_failures.c.job_id == r["job_id"],
                        item_failures.c.item_key == r["item_key"],
                        item_failures.c.next_retry_time == r["next_retry_time"],
                    )
                    .values(next_retry_time=now + hold)
                )
                if taken.rowcount == 1:
                    failure = Failure(
                        r["item_key"], r["item"], "retrying", r["attempts"], r["reason"], now + hold
                    )
                    claimed.append((r["job_id"], r["kind"], r["payload"], failure))
        return claimed

    async def settle_retries(
        self, job_id: str, done: list[str], failures: list[Failure], now: datetime
    ) -> None:
        """Record a retry batch: done items leave the failures, others move on."""
        async with self._engine.begin() as conn:
            for key in done:
                await conn.execute(
                    item_failures.delete().where(
                        item_failures.c.job_id == job_id, item_failures.c.item_key == key
                    )
                )
            await record_batch(conn, job_id, len(done), failures, now, lock=not self._sqlite)
            await finish_if_complete(conn, job_id, now)

    async def failures(self, job_id: str) -> list[Failure]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(item_failures)
                    .where(item_failures.c.job_id == job_id)
                    .order_by(item_failures.c.item_key)
                )
            ).mappings()
            return [
                Failure(
                    r["item_key"],
                    r["item"],
                    r["state"],
                    r["attempts"],
                    r["reason"],
                    r["next_retry_time"],
                )
                for r in rows
            ]
