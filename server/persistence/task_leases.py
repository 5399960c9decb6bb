"""Shard leases: a worker claims a shard of a job, keeps its lease alive,
records its batches under it (fenced), and hands it back."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.persistence.tables import CANCELLED, DONE, PAUSED, PENDING, RUNNING, jobs, shards
from server.persistence.task_batches import Failure, finish_if_complete, record_batch
from server.persistence.task_progress import rate_from

log = logging.getLogger("custops.engine")


@dataclass(frozen=True)
class Lease:
    job_id: str
    kind: str
    payload: dict[str, Any]
    shard_index: int
    cursor: str
    fencing: int
    tenant: str = ""


class ShardLeaseStore:
    """Part of TaskStore: the leases on a job's shards."""

    _engine: AsyncEngine
    _sqlite: bool

    async def claim(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        kinds: Collection[str],
        passed_over: Collection[str] = (),
    ) -> Lease | None:
        """Lease one shard of the given kinds that is free (never leased, or its
        lease ran out). A replica only takes the kinds it can run. Tenants take
        turns: a shard of the tenant holding the fewest live leases comes
        first, then the earliest due; tenants `passed_over` (whose shares have
        no tokens now) are not offered."""
        if not kinds:
            return None
        held = _leases_by_tenant(now, kinds).subquery()
        query = (
            select(
                shards.c.job_id,
                shards.c.shard_index,
                shards.c.cursor,
                shards.c.fencing,
                jobs.c.kind,
                jobs.c.payload,
                jobs.c.tenant,
            )
            .join(jobs, jobs.c.job_id == shards.c.job_id)
            .outerjoin(held, held.c.tenant == jobs.c.tenant)
            .where(_claimable(now, kinds), jobs.c.tenant.not_in(list(passed_over)))
            .order_by(
                func.coalesce(held.c.leases, 0),
                jobs.c.due_time,
                shards.c.job_id,
                shards.c.shard_index,
            )
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
                .where(*_fenced(row.job_id, row.shard_index, row.fencing))
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
            row.job_id,
            row.kind,
            row.payload,
            row.shard_index,
            row.cursor,
            row.fencing + 1,
            row.tenant,
        )

    async def crowded(self, lease: Lease, now: datetime, kinds: Collection[str]) -> bool:
        """Whether another tenant waits for a worker while this lease's tenant
        holds more live leases than that one: then this shard is handed back
        (at a batch's end), so workers are shared between tenants, in turns
        of a few seconds when there are fewer workers than tenants."""
        held = _leases_by_tenant(now, kinds).subquery()
        waiting = (
            select(func.min(func.coalesce(held.c.leases, 0)))
            .select_from(shards.join(jobs, jobs.c.job_id == shards.c.job_id))
            .outerjoin(held, held.c.tenant == jobs.c.tenant)
            .where(_claimable(now, kinds), jobs.c.tenant != lease.tenant)
        )
        mine = select(held.c.leases).where(held.c.tenant == lease.tenant)
        async with self._engine.connect() as conn:
            fewest = await conn.scalar(waiting)
            if fewest is None:
                return False
            return int(await conn.scalar(mine) or 0) > int(fewest)

    async def heartbeat(self, lease: Lease, now: datetime, extend: timedelta) -> bool:
        """Extend a lease while a batch is slow (a throttled or slow downstream);
        False when it was lost, so the worker stops at the batch's end."""
        async with self._engine.begin() as conn:
            moved = await conn.execute(
                update(shards)
                .where(*_fenced(lease.job_id, lease.shard_index, lease.fencing))
                .values(lease_until=now + extend)
            )
            return bool(moved.rowcount == 1)

    async def release(self, lease: Lease) -> None:
        """Hand a shard back (the worker is stopping): free for anyone at once."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(shards)
                .where(*_fenced(lease.job_id, lease.shard_index, lease.fencing))
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
                .where(*_fenced(lease.job_id, lease.shard_index, lease.fencing))
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
            await record_batch(conn, lease.job_id, done, failures, now, lock=not self._sqlite)
            if cursor is None:
                await finish_if_complete(conn, lease.job_id, now)
            if state in (PAUSED, CANCELLED):
                return False
        return True


def _claimable(now: datetime, kinds: Collection[str]) -> ColumnElement[bool]:
    """A shard nobody holds, of a job that is due and of a kind run here."""
    return and_(
        shards.c.state != DONE,
        or_(shards.c.lease_owner == "", shards.c.lease_until < now),
        jobs.c.state.in_([PENDING, RUNNING]),
        jobs.c.due_time <= now,
        jobs.c.kind.in_(list(kinds)),
    )


def _leases_by_tenant(now: datetime, kinds: Collection[str]) -> Select[tuple[str, int]]:
    """How many shards each tenant's jobs hold under a live lease."""
    return (
        select(jobs.c.tenant, func.count().label("leases"))
        .select_from(shards.join(jobs, jobs.c.job_id == shards.c.job_id))
        .where(
            shards.c.state != DONE,
            shards.c.lease_owner != "",
            shards.c.lease_until >= now,
            jobs.c.kind.in_(list(kinds)),
        )
        .group_by(jobs.c.tenant)
    )


def _fenced(job_id: str, shard_index: int, fencing: int) -> tuple[ColumnElement[bool], ...]:
    """The shard as the holder of this fencing token saw it: a write under
    it changes nothing once another worker took the shard over."""
    return (
        shards.c.job_id == job_id,
        shards.c.shard_index == shard_index,
        shards.c.fencing == fencing,
    )
