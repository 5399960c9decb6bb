"""Members' outcomes as merchants read them: listed, exported, counted by
outcome, reason and day (docs/outcomes.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from domain import outcomes
from domain.errors import NotFound
from domain.outcomes import MemberOutcome, OutcomeKind
from domain.plan import Plan
from domain.ports import UnitOfWork
from domain.runs import RunKind
from domain.zones import zone
from server.persistence.outcome_reads import OutcomeFilter, OutcomeReads, RunOfOutcomes
from server.usecases.plans import existing_plan

EXPORT_CHUNK = 2000


@dataclass(frozen=True)
class Scope:
    """Whose outcomes: a run of a plan, a plan, or a member of the shop."""

    shop_id: str
    plan_id: str = ""
    run_id: str = ""
    member_id: str = ""


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last (run id, member id) listed."""

    run_id: str
    member_id: str


@dataclass(frozen=True)
class CountKey:
    day: str  # "" in totals
    kind: OutcomeKind
    reason: str
    test: bool


class OutcomeUseCases:
    def __init__(
        self, uow: Callable[[], AbstractAsyncContextManager[UnitOfWork]], reads: OutcomeReads
    ) -> None:
        self._uow = uow
        self._reads = reads

    async def page(
        self, scope: Scope, which: OutcomeFilter, after: Cursor | None, limit: int
    ) -> list[MemberOutcome]:
        if scope.member_id:
            after_run = after.run_id if after is not None else ""
            return await self._reads.member_page(
                scope.shop_id, scope.member_id, which, after_run, limit
            )
        runs = await self._runs(scope)
        position = None if after is None else (after.run_id, after.member_id)
        return await self._reads.plan_page(runs, which, position, limit)

    async def export(
        self, scope: Scope, which: OutcomeFilter
    ) -> tuple[int, AsyncIterator[list[MemberOutcome]]]:
        """How many outcomes, and the chunks that hold them."""
        runs = await self._runs(scope)
        total = await self._reads.count(runs, which)
        return total, self._reads.chunks(runs, which, EXPORT_CHUNK)

    async def counts(
        self, shop_id: str, plan_id: str
    ) -> tuple[Counter[CountKey], Counter[CountKey]]:
        """Members by outcome and reason in all, and per day of the runs'
        fire times in the plan's zone; test runs' members apart."""
        plan = await self._plan(shop_id, plan_id)
        local = zone(plan.spec.time_zone)
        totals: Counter[CountKey] = Counter()
        daily: Counter[CountKey] = Counter()
        for count in await self._reads.counts(shop_id, plan_id):
            reading = outcomes.read(count.stored, count.run.grants)
            test = count.run.kind == RunKind.TEST.value
            day = count.run.fire_time.astimezone(local).date().isoformat()
            totals[CountKey("", reading.kind, reading.reason, test)] += count.members
            daily[CountKey(day, reading.kind, reading.reason, test)] += count.members
        return totals, daily

    async def _runs(self, scope: Scope) -> list[RunOfOutcomes]:
        """The runs in scope: a plan's, or one run (its id names its plan)."""
        if scope.plan_id:
            await self._plan(scope.shop_id, scope.plan_id)
        runs = await self._reads.runs(scope.shop_id, scope.plan_id, scope.run_id)
        if scope.run_id and not runs:
            raise NotFound(
                f"no run {scope.run_id} with members in shop {scope.shop_id}",
                reason="RUN_NOT_FOUND",
            )
        return runs

    async def _plan(self, shop_id: str, plan_id: str) -> Plan:
        async with self._uow() as uow:
            return await existing_plan(uow, shop_id, plan_id)
