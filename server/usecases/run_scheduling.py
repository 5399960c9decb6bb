"""The scheduler: each tick carries out what the due plans' calendars decide
(domain.scheduling) -- runs started, fires skipped, plans moved on or ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain import lifecycle, runs, scheduling
from domain.errors import Unavailable
from domain.plan import Plan
from domain.plan_calendar import TICK, End, PlanCalendar, Skip
from domain.ports import RunLaunch, SchedulePlace, UnitOfWork
from domain.runs import Run
from server import call_context
from server.usecases.plans import existing_plan
from server.usecases.run_launches import ENDED_STATES, RunLaunches, plan_key

log = logging.getLogger("custops.runs")


# A plan whose time is over waits this long between looks at its last run.
END_RECHECK = timedelta(seconds=5)
# Transactions of due plans per scheduler tick, at most (a backlog after an
# outage drains over several ticks, and other duties get their turn).
TICK_ROUNDS = 20


@dataclass
class _Written:
    """What one scheduler transaction wrote, for what follows its commit."""

    launched: list[tuple[Plan, RunLaunch]] = field(default_factory=list)
    made: set[str] = field(default_factory=set)  # the runs made now, by id
    over: list[tuple[Plan, scheduling.Step]] = field(default_factory=list)


class RunScheduling(RunLaunches):
    """Part of RunUseCases: the scheduler's tick."""

    async def tick(self, limit: int = 100) -> int:
        """The scheduler: carry out what is due, `limit` plans per
        transaction, until fewer are due (or `TICK_ROUNDS` transactions);
        how many were due. When a transaction fails (not for want of a
        database), its plans are tried one by one: one plan's trouble must
        not hold up every other shop's."""
        now = self._clock.now()
        carried = 0
        for _ in range(TICK_ROUNDS):
            try:
                due = await self._carry_out(now, limit)
            except Unavailable:
                raise
            except Exception:
                log.warning("a scheduler transaction failed; plan by plan", exc_info=True)
                return carried + await self._one_by_one(now, limit)
            carried += due
            if due < limit:
                break
        self.metrics.polled(carried)
        return carried

    async def _one_by_one(self, now: datetime, limit: int) -> int:
        async with self._uow() as uow:
            keys = [plan_key(p) for p in await uow.plans.due(now, limit)]
        for key in keys:
            try:
                await self._carry_out(now, 1, key)
            except Exception:
                log.warning("scheduling plan %s failed; next tick", key[1], exc_info=True)
        return len(keys)

    async def _carry_out(
        self, now: datetime, limit: int, only: tuple[str, str] | None = None
    ) -> int:
        """The due plans (or the one `only` names, when due), held until the
        commit: another replica's tick on the same plans waits, then finds
        them moved on."""
        async with self._uow() as uow:
            due = list(await uow.plans.due(now, limit, only))
            written = await self._write_steps(uow, due, now)
            await uow.commit()
        await self._after(written, now)
        return len(due)

    async def _step(self, plan: Plan, now: datetime) -> None:
        """One plan as it was read (the white-box tests play racing replicas)."""
        async with self._uow() as uow:
            written = await self._write_steps(uow, [plan], now)
            await uow.commit()
        await self._after(written, now)

    async def _write_steps(self, uow: UnitOfWork, due: list[Plan], now: datetime) -> _Written:
        """What each plan's calendar decided (domain.scheduling), written in
        the transaction: runs made with their jobs, skipped fires, plans
        moved on. Runs and skipped fires are named by their fire times, so
        a run is made once however the replicas race."""
        written = _Written()
        skipped: list[Run] = []
        moves: list[tuple[Plan, SchedulePlace]] = []
        for plan in due:
            try:
                step = _decide(plan, now)
            except Exception:  # the plan's own trouble: the others go on
                log.warning("scheduling plan %s failed; next tick", plan.plan_id, exc_info=True)
                continue
            for start in step.starts:
                run = self._new_run(plan, start.fire_time, start.trigger, start.named_for, now)
                written.launched.append((plan, self._launch_of(plan, run)))
            skipped += [_skipped(plan, skip, now) for skip in step.skips]
            if step.end is not None:
                written.over.append((plan, step))  # moved on once its runs are seen
            else:
                moves.append((plan, _place(step, step.next_check)))
        await uow.plans.advance(moves)
        launches = [launch for _, launch in written.launched]
        written.made = await uow.launches.add(launches, now)
        await uow.launches.add_skipped(skipped)
        return written

    async def _after(self, written: _Written, now: datetime) -> None:
        """After the commit: the new runs steered and announced, runs made
        by an earlier try finished, plans whose time is over ended."""
        made = written.made
        await self._started([(p, run) for p, run in written.launched if run.run.run_id in made])
        for plan, launch in written.launched:
            if launch.run.run_id not in made:
                await self._adopt(plan, launch)
        for plan, step in written.over:
            assert step.end is not None
            if not await self._ended(plan, step.end, now):
                async with self._uow() as uow:  # a run goes on: look again shortly
                    await uow.plans.advance([(plan, _place(step, now + END_RECHECK))])
                    await uow.commit()

    async def _ended(self, plan: Plan, end: End, now: datetime) -> bool:
        """End a plan whose time is over once its last run has ended; the
        audit log says the platform did it and why."""
        if await self._store.unfinished(plan.shop_id, plan.plan_id, ENDED_STATES):
            return False
        with call_context.platform_work("EndPlan"):
            async with self._uow() as uow:
                current = await existing_plan(uow, plan.shop_id, plan.plan_id)
                if current.revision != plan.revision:
                    return False  # changed meanwhile: decided again at the next tick
                await uow.plans.save(lifecycle.expire(current, end, now), before=current)
                await uow.commit()
        log.info("plan %s ended by itself: %s", plan.plan_id, end.reason.value)
        return True


def _decide(plan: Plan, now: datetime) -> scheduling.Step:
    assert plan.next_check_time is not None
    cursor = plan.schedule_cursor or plan.next_check_time - TICK
    calendar = PlanCalendar.of(plan, now)
    return scheduling.step(calendar, cursor, now, plan.spec.time.missed_fire_policy)


def _place(step: scheduling.Step, next_check: datetime | None) -> SchedulePlace:
    return SchedulePlace(step.cursor, next_check, step.next_fire, bool(step.starts))


def _skipped(plan: Plan, skip: Skip, now: datetime) -> Run:
    return Run(
        runs.skip_id(plan.shop_id, plan.plan_id, skip.at),
        plan.shop_id,
        plan.plan_id,
        runs.RunKind.DELIVERY,
        runs.RunTrigger.SCHEDULE,
        skip.at,
        now,
        skip_reason=skip.reason.value,
        resume_time=skip.resume,
    )
