"""The engine's state in the database: jobs, shard leases, failures."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
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

log = logging.getLogger("custops.engine")

# The current rate is a count of processed items that decays with this time
# constant: it answers "items per second over the last few seconds", the same
# on every replica because it lives in the job's row.
RATE_SECONDS = 5.0


# Longer than this, a run barely moves and has no estimate (timedelta
# itself overflows near 10**9 days).
_LONGEST_ETA = 100 * 365 * 86400.0


@dataclass(frozen=True)
class Lease:
    job_id: str
    kind: str
    payload: dict[str, Any]
    shard_index: int
    cursor: str
    fencing: int


@dataclass(frozen=True)
class Progress:
    state: str
    total: int  # 0: the job kind did not say
    done: int
    failed: int  # permanently failed or dead-lettered
    dead: int  # of which dead-lettered
    retrying: int
    shards_done: int
    shards: int
    rate: float  # items processed per second, recently
    eta: timedelta | None  # None while it cannot be told (no total, no rate, paused)
    started: datetime | None = None  # when it started (or was last resumed)
    updated: datetime | None = None  # its last change: the end, once it ended
    # Items failed for good or dead-lettered, by the reason they gave.
    failed_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.done + self.failed


def decayed(rate: float, stamp: datetime | None, now: datetime) -> float:
    if stamp is None:
        return 0.0
    elapsed = max((now - stamp).total_seconds(), 0.0)
    return rate * math.exp(-elapsed / RATE_SECONDS)


def rate_from(now: datetime) -> dict[str, Any]:
    """The rate columns of a job that starts (or starts again) now."""
    return {"rate": 0.0, "rate_time": now, "rate_since": now}


def current_rate(
    rate: float, stamp: datetime | None, since: datetime | None, now: datetime
) -> float:
    """Items per second now. The decayed count starts at zero when the job
    starts, so early on it is divided by the share of the window seen so far
    (as bias-corrected moving averages do); under a second is a second."""
    if since is None:
        return 0.0
    seen = max((now - since).total_seconds(), 1.0)
    return decayed(rate, stamp, now) / (1 - math.exp(-seen / RATE_SECONDS))


@dataclass(frozen=True)
class Failure:
    item_key: str
    item: dict[str, Any]
    state: str  # retrying | failed | dead
    attempts: int
    reason: str
    next_retry_time: datetime | None


class EngineStore:
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

    async def claim(
        self, owner: str, now: datetime, lease: timedelta, kinds: Collection[str]
    ) -> Lease | None:
        """Lease one shard of the given kinds that is free (never leased, or its
        lease ran out). A replica only takes the kinds it can run."""
        if not kinds:
            return None
        free = and_(
            shards.c.state != DONE,
            or_(shards.c.lease_owner == "", shards.c.lease_until < now),
        )
        query = (
            select(
                shards.c.job_id,
                shards.c.shard_index,
                shards.c.cursor,
                shards.c.fencing,
                jobs.c.kind,
                jobs.c.payload,
            )
            .join(jobs, jobs.c.job_id == shards.c.job_id)
            .where(
                free,
                jobs.c.state.in_([PENDING, RUNNING]),
                jobs.c.due_time <= now,
                jobs.c.kind.in_(list(kinds)),
            )
            .order_by(jobs.c.due_time, shards.c.job_id, shards.c.shard_index)
            .limit(1)
        )
        if not self._sqlite:
            query = query.with_for_update(skip_locked=True, of=shards)
        async with self._engine.begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            result = await conn.execute(
                update(shards)
                .where(
                    shards.c.job_id == row.job_id,
                    shards.c.shard_index == row.shard_index,
                    shards.c.fencing == row.fencing,
                )
                .values(
                    state=RUNNING,
                    lease_owner=owner,
                    lease_until=now + lease,
                    fencing=shards.c.fencing + 1,
                )
            )
            if result.rowcount != 1:
                return None  # another worker won it
            await conn.execute(
                update(jobs)
                .where(jobs.c.job_id == row.job_id, jobs.c.state == PENDING)
                .values(state=RUNNING, update_time=now, **rate_from(now))
            )
        # Which replica ran which shard: the row keeps only the last owner,
        # and owners are per process, so each lease is also told here.
        log.info(
            "shard leased",
            extra={
                "job_id": row.job_id,
                "kind": row.kind,
                "shard": row.shard_index,
                "owner": owner,
                "fencing": row.fencing + 1,
            },
        )
        return Lease(
            row.job_id, row.kind, row.payload, row.shard_index, row.cursor, row.fencing + 1
        )

    async def heartbeat(self, lease: Lease, now: datetime, extend: timedelta) -> bool:
        """Extend a lease while a batch is slow (a throttled or slow downstream);
        False when it was lost, so the worker stops at the batch's end."""
        async with self._engine.begin() as conn:
            moved = await conn.execute(
                update(shards)
                .where(
                    shards.c.job_id == lease.job_id,
                    shards.c.shard_index == lease.shard_index,
                    shards.c.fencing == lease.fencing,
                )
                .values(lease_until=now + extend)
            )
            return bool(moved.rowcount == 1)

    async def release(self, lease: Lease) -> None:
        """Hand a shard back (the worker is stopping): free for anyone at once."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(shards)
                .where(
                    shards.c.job_id == lease.job_id,
                    shards.c.shard_index == lease.shard_index,
                    shards.c.fencing == lease.fencing,
                )
                .values(lease_owner="", lease_until=None)
            )

    async def commit(
        self,
        lease: Lease,
        cursor: str | None,
        done: int,
        failures: list[Failure],
        now: datetime,
        extend: timedelta,
    ) -> bool:
        """Record a batch's progress; False when the lease was lost (fenced out)."""
        async with self._engine.begin() as conn:
            moved = await conn.execute(
                update(shards)
                .where(
                    shards.c.job_id == lease.job_id,
                    shards.c.shard_index == lease.shard_index,
                    shards.c.fencing == lease.fencing,
                )
                .values(
                    cursor=cursor if cursor is not None else lease.cursor,
                    done=shards.c.done + done,
                    state=DONE if cursor is None else RUNNING,
                    lease_until=now + extend,
                )
            )
            if moved.rowcount != 1:
                return False
            state = await conn.scalar(select(jobs.c.state).where(jobs.c.job_id == lease.job_id))
            if state in (PAUSED, CANCELLED) and cursor is not None:
                # Acknowledged: this batch counts, no new one starts; the shard
                # is left free for whoever resumes the job.
                await conn.execute(
                    update(shards)
                    .where(
                        shards.c.job_id == lease.job_id, shards.c.shard_index == lease.shard_index
                    )
                    .values(lease_owner="", lease_until=None)
                )
            await self._record(conn, lease.job_id, done, failures, now)
            if cursor is None:
                await self._finish_if_complete(conn, lease.job_id, now)
            if state in (PAUSED, CANCELLED):
                return False
        return True

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
            failures = await _failure_counts(conn, [job_id])
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

    async def failure_counts(self, job_ids: list[str]) -> dict[str, int]:
        """Items by failure state (retrying, failed, dead) over these jobs."""
        async with self._engine.connect() as conn:
            return await _failure_counts(conn, job_ids)

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
            await self._record(conn, job_id, len(done), failures, now)
            await self._finish_if_complete(conn, job_id, now)

    async def _failure(self, conn: Any, job_id: str, f: Failure) -> None:
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

    async def _record(
        self, conn: Any, job_id: str, done: int, failures: list[Failure], now: datetime
    ) -> None:
        """A batch's outcome: its failures, and the job's counters and rate."""
        for f in failures:
            await self._failure(conn, job_id, f)
        failed = sum(1 for f in failures if f.state in ("failed", "dead"))
        query = select(jobs.c.rate, jobs.c.rate_time).where(jobs.c.job_id == job_id)
        if not self._sqlite:
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

    async def _finish_if_complete(self, conn: Any, job_id: str, now: datetime) -> None:
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

    async def job(self, job_id: str) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(jobs).where(jobs.c.job_id == job_id))).mappings().first()
            )
        if row is None:
            raise KeyError(job_id)
        return dict(row)

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


async def _failure_counts(conn: Any, job_ids: list[str]) -> dict[str, int]:
    rows = await conn.execute(
        select(item_failures.c.state, func.count())
        .where(item_failures.c.job_id.in_(job_ids))
        .group_by(item_failures.c.state)
    )
    return {state: int(n) for state, n in rows}
