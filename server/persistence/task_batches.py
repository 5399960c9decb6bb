"""A batch's outcome in the database: its items' failures, the job's
counters and rate, and the job's end once nothing is left to do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from server.persistence.tables import CANCELLED, DONE, item_failures, jobs, shards
from server.persistence.task_progress import RATE_SECONDS, decayed


@dataclass(frozen=True)
class Failure:
    item_key: str
    item: dict[str, Any]
    state: str  # retrying | failed | dead
    attempts: int
    reason: str
    next_retry_time: datetime | None


async def save_failure(conn: Any, job_id: str, f: Failure) -> None:
    """An item's failure, new or moved on (retrying, failed, dead)."""
    values = {
        "state": f.state,
        "attempts": f.attempts,
        "reason": f.reason[:200],
        "next_retry_time": f.next_retry_time,
        "item": f.item,
    }
    changed = await conn.execute(
        update(item_failures)
        .where(item_failures.c.job_id == job_id, item_failures.c.item_key == f.item_key)
        .values(**values)
    )
    if changed.rowcount == 0:
        await conn.execute(
            insert(item_failures).values(job_id=job_id, item_key=f.item_key, **values)
        )


async def record_batch(
    conn: Any, job_id: str, done: int, failures: list[Failure], now: datetime, *, lock: bool
) -> None:
    """A batch's outcome: its failures, and the job's counters and rate."""
    for f in failures:
        await save_failure(conn, job_id, f)
    failed = sum(1 for f in failures if f.state in ("failed", "dead"))
    query = select(jobs.c.rate, jobs.c.rate_time).where(jobs.c.job_id == job_id)
    if lock:
        query = query.with_for_update()  # replicas record into one row
    row = (await conn.execute(query)).first()
    previous = decayed(row.rate, row.rate_time, now) if row is not None else 0.0
    rate = previous + (done + len(failures)) / RATE_SECONDS
    await conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id)
        .values(
            done=jobs.c.done + done,
            failed=jobs.c.failed + failed,
            rate=rate,
            rate_time=now,
            update_time=now,
        )
    )


async def finish_if_complete(conn: Any, job_id: str, now: datetime) -> None:
    """A job ends when every shard is done and no item waits for a retry."""
    open_shards = await conn.scalar(
        select(func.count())
        .select_from(shards)
        .where(shards.c.job_id == job_id, shards.c.state != DONE)
    )
    waiting = await conn.scalar(
        select(func.count())
        .select_from(item_failures)
        .where(item_failures.c.job_id == job_id, item_failures.c.state == "retrying")
    )
    if open_shards or waiting:
        return
    failed = await conn.scalar(select(jobs.c.failed).where(jobs.c.job_id == job_id))
    state = "completed_with_failures" if failed else "succeeded"
    # A cancelled job stays cancelled even if its batches in flight were
    # its last: the operator's decision is what the run shows.
    await conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.state != CANCELLED)
        .values(state=state, update_time=now)
    )


async def failure_counts(conn: Any, job_ids: list[str]) -> dict[str, int]:
    """Items by failure state (retrying, failed, dead) over these jobs."""
    rows = await conn.execute(
        select(item_failures.c.state, func.count())
        .where(item_failures.c.job_id.in_(job_ids))
        .group_by(item_failures.c.state)
    )
    return {state: int(n) for state, n in rows}
