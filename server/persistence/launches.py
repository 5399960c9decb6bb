"""Runs made with their jobs in the scheduler's transaction: the rows of a
run, of a job and of its shards, and the repository that writes many at once.

One transaction per scheduler tick writes every due plan's new runs, their
jobs and the plans' next places: a run exists with its job or not at all,
and a tick costs a handful of statements however many plans are due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.ports import RunLaunch
from domain.runs import Run
from server.persistence.audit_log import record_change
from server.persistence.tables import PENDING, jobs, plan_runs, shards
from server.persistence.upserts import insert_new


def run_resource(run: Run) -> str:
    """The run's name in the audit log."""
    return f"plans/{run.plan_id}/runs/{run.run_id}"


def run_row(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "shop_id": run.shop_id,
        "plan_id": run.plan_id,
        "kind": run.kind.value,
        "run_trigger": run.trigger.value,
        "fire_time": run.fire_time,
        "job_id": run.job_id,
        "create_time": run.create_time,
        "target_run_id": run.target_run_id,
        "skip_reason": run.skip_reason,
        "resume_time": run.resume_time,
        "grants": run.grants,
    }


def job_rows(
    job_id: str,
    kind: str,
    key: str,
    payload: dict[str, Any],
    cursors: list[str],
    due: datetime,
    now: datetime,
    total: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new job's row and its shards' rows, one shard per cursor."""
    job = {
        "job_id": job_id,
        "kind": kind,
        "key": key,
        "state": PENDING,
        "payload": payload,
        "due_time": due,
        "total": total,
        "done": 0,
        "failed": 0,
        "create_time": now,
        "update_time": now,
        "rate": 0.0,
        "rate_time": None,
        "rate_since": None,
        # Workers take turns between tenants (ShardLeaseStore.claim): a
        # job's is the shop its payload names.
        "tenant": str(payload.get("shop_id", "")),
    }
    shard_rows = [
        {
            "job_id": job_id,
            "shard_index": i,
            "state": PENDING,
            "cursor": c,
            "done": 0,
            "lease_owner": "",
            "lease_until": None,
            "fencing": 0,
        }
        for i, c in enumerate(cursors)
    ]
    return job, shard_rows


class SqlRunLaunches:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, launches: Sequence[RunLaunch], now: datetime) -> set[str]:
        """Each run with its job; the ids of the runs made now (a run
        already made under its id, by another replica or an earlier try,
        is left as it is, and so is its job)."""
        rows = [run_row(launch.run) for launch in launches]
        made = await insert_new(self._conn, plan_runs, rows, "run_id")
        job_list: list[dict[str, Any]] = []
        shard_list: list[dict[str, Any]] = []
        for launch, row in zip(launches, rows, strict=True):
            run = launch.run
            if run.run_id not in made:
                continue
            # On record when a call made it (nothing for the scheduler).
            await record_change(self._conn, run.shop_id, run_resource(run), None, row)
            job, job_shards = job_rows(
                run.job_id,
                launch.job_kind,
                run.run_id,
                dict(launch.payload),
                list(launch.cursors),
                now,
                now,
                launch.total,
            )
            job_list.append(job)
            shard_list.extend(job_shards)
        await insert_new(self._conn, jobs, job_list, "job_id")
        await insert_new(self._conn, shards, shard_list, "job_id")
        return made

    async def add_skipped(self, skipped: Sequence[Run]) -> None:
        """Skipped fires (runs without a job), once each."""
        await insert_new(self._conn, plan_runs, [run_row(run) for run in skipped], "run_id")
