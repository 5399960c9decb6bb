"""The job kind that takes back what one delivery run granted (回收): it pages
the run's "benefit granted" records, asks the benefit platform to recover
each instance (through its throttled port), and records what came back.

Exactly once: each instance has one recovery key (domain.runs.recover_key),
so a replayed batch, a second recovery of the same run, and ending the plan
with recovery all meet the benefit platform's first answer; a "recovered"
record is written once per instance, and the counters grow only by the rows
that were new."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import runs
from domain.downstream_ports import BenefitGranter, Recover
from domain.records import RecordKind
from server.downstream.errors import CallFailed
from server.persistence.member_benefits import mark_recovered, recovered_record_id
from server.persistence.tables import operation_records, run_counters, run_members
from server.persistence.upserts import add_counts, insert_new
from server.tasks.kinds import Item, ItemResult, Outcome, Page

NAME = "plan_recovery"
# What the benefit platform answers for an instance that is used, expired or
# already taken back by someone else: nothing to do, counted as skipped.
NOT_UNUSED = "NOT_UNUSED"


def payload_of(run_id: str, shop_id: str, plan_id: str, target: str, reason: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "shop_id": shop_id,
        "plan_id": plan_id,
        "target_run_id": target,
        "reason": reason,
    }


class Recovery:
    name = NAME
    bucket: str | None = None  # its port takes from the benefit bucket
    batch_size = 500

    def __init__(
        self,
        engine: AsyncEngine,
        benefits: BenefitGranter,
        now: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._benefits = benefits
        self._now = now

    def split(self, payload: dict[str, Any]) -> list[str]:
        return [""]  # one shard, in record order: the cursor is the last record id

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page:
        records = operation_records.c
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(records.record_id, records.member_id, records.instance_id)
                    .where(
                        records.run_id == payload["target_run_id"],
                        records.kind == RecordKind.BENEFIT_GRANTED.value,
                        records.record_id > cursor,
                    )
                    .order_by(records.record_id)
                    .limit(limit)
                )
            ).all()
        items = [Item(r[0], {"member": r[1], "instance": r[2]}) for r in rows]
        return Page(items, items[-1].key if len(items) == limit else None)

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        source = runs.grant_source(payload["plan_id"])
        asks = [
            Recover(
                runs.recover_key(source, i.data["instance"]), i.data["instance"], payload["reason"]
            )
            for i in items
        ]
        try:
            refusals = await self._benefits.recover(payload["shop_id"], asks)
        except CallFailed as failed:
            outcome = Outcome.RETRY if failed.retryable else Outcome.FAILED
            return [ItemResult(i.key, outcome, failed.reason) for i in items]
        out: list[ItemResult] = []
        recovered: list[Item] = []
        not_unused: list[Item] = []
        for item, refusal in zip(items, refusals, strict=True):
            if refusal is None:
                recovered.append(item)  # maybe a duplicate: taken back before, maybe unrecorded
            elif refusal.reason == NOT_UNUSED:
                not_unused.append(item)
            else:
                outcome = Outcome.RETRY if refusal.retryable else Outcome.FAILED
                out.append(ItemResult(item.key, outcome, refusal.reason))
                continue
            out.append(ItemResult(item.key, Outcome.DONE))
        await self._write(payload, recovered, not_unused)
        return out

    async def _write(
        self, payload: dict[str, Any], recovered: list[Item], not_unused: list[Item]
    ) -> None:
        """Records of what came back and the run's outcome per instance, once
        each; the counters count only the rows that were new."""
        run_id = payload["run_id"]
        now = self._now()
        async with self._engine.begin() as conn:
            new_records = await insert_new(
                conn,
                operation_records,
                [
                    {
                        "record_id": recovered_record_id(i.data["instance"]),
                        "shop_id": payload["shop_id"],
                        "member_id": i.data["member"],
                        "kind": RecordKind.BENEFIT_RECOVERED.value,
                        "plan_id": payload["plan_id"],
                        "run_id": run_id,
                        "instance_id": i.data["instance"],
                        "template_id": "",
                        "detail": {"recovers_run_id": payload["target_run_id"]},
                        "occur_time": now,
                    }
                    for i in recovered
                ],
                "record_id",
            )
            await mark_recovered(conn, payload["shop_id"], [i.data["instance"] for i in recovered])
            # In a recovery run the unit is the instance: run_members holds
            # each instance's outcome once, so a replayed batch counts nothing twice.
            met = await insert_new(
                conn,
                run_members,
                [
                    {"run_id": run_id, "member_id": i.data["instance"], "outcome": o, "units": 0}
                    for items, o in ((recovered, "recovered"), (not_unused, f"skip:{NOT_UNUSED}"))
                    for i in items
                ],
                "member_id",
            )
            counts = Counter({"recovered": len(new_records)})
            counts[f"skipped.{NOT_UNUSED}"] = sum(i.data["instance"] in met for i in not_unused)
            await add_counts(conn, run_counters, {"run_id": run_id}, dict(counts))
