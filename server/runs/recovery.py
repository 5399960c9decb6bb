"""The job kind that takes back what one delivery run granted (回收): it pages
the run's "benefit granted" records, asks the benefit platform to recover
each instance (through its throttled port), and records what came back.

Exactly once: each instance has one recovery key (domain.runs.recover_key),
so a replayed batch, a second recovery of the same run, and ending the plan
with recovery all meet the benefit platform's first answer; a "recovered"
record is written once per instance, and the counters grow only by the rows
that were new."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain import runs
from domain.downstream_ports import BenefitGranter, Recover
from server.downstream.errors import CallFailed
from server.persistence.recovery_store import GrantedInstance, RecoveryRun, RecoveryStore
from server.tasks.kinds import Item, ItemResult, Outcome, Page

NAME = "plan_recovery"
# What the benefit platform answers for an instance that is used, expired or
# already taken back by someone else: nothing to do, counted as skipped.
NOT_UNUSED = "NOT_UNUSED"
# A cursor names the last member whose grants were taken back. One written
# before it did (migration 0014) is the last grant record's id, whose
# member is taken back again from the start: idempotently, by its keys.
MEMBER_CURSOR = "member:"


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
        store: RecoveryStore,
        benefits: BenefitGranter,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._benefits = benefits
        self._now = now

    def split(self, payload: dict[str, Any]) -> list[str]:
        return [""]  # one shard, in member order: the cursor is the last member done

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page:
        after, inclusive = _after(cursor)
        found, last = await self._store.granted(
            payload["shop_id"], payload["target_run_id"], after, limit, inclusive=inclusive
        )
        items = [
            Item(g.record_id, {"member": g.member_id, "instance": g.instance_id}) for g in found
        ]
        return Page(items, None if last is None else f"{MEMBER_CURSOR}{last}")

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
        run = RecoveryRun(
            payload["run_id"], payload["shop_id"], payload["plan_id"], payload["target_run_id"]
        )
        await self._store.came_back(
            run, _instances(recovered), _instances(not_unused), NOT_UNUSED, self._now()
        )


def _instances(items: list[Item]) -> list[GrantedInstance]:
    return [GrantedInstance(i.key, i.data["member"], i.data["instance"]) for i in items]


def _after(cursor: str) -> tuple[str, bool]:
    """Where a page starts: after this member, or (an older cursor) at it."""
    if not cursor or cursor.startswith(MEMBER_CURSOR):
        return cursor.removeprefix(MEMBER_CURSOR), False
    return runs.member_of_grant_key(cursor), True  # the last grant record's id
