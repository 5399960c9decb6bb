"""Runs of plans: starting them (by schedule, catch-up or by hand), watching
and steering them, and the plan statistics summed over them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain import lifecycle, runs, scheduling
from domain.audience import Members, listed_members
from domain.errors import FailedPrecondition, FieldViolation, NotFound, Unavailable, require
from domain.plan import Plan, PlanState
from domain.plan_calendar import TICK, End, PlanCalendar, Skip
from domain.ports import (
    AudienceDirectory,
    Clock,
    RequestKey,
    RunLaunch,
    SchedulePlace,
    UnitOfWork,
)
from domain.records import RecordKind
from domain.runs import Run
from server import call_context
from server.engine.store import EngineStore, Progress
from server.persistence.audit_log import Audited
from server.persistence.launches import run_resource
from server.persistence.tables import CANCELLED, PAUSED
from server.runs import recovery
from server.runs.delivery import NAME as DELIVERY
from server.runs.delivery import SHARDS, TEST_SHARD, payload_of, shard_cursors
from server.runs.store import RunStore
from server.usecases.once import remembered
from server.usecases.plans import UnitOfWorkFactory, existing_plan

log = logging.getLogger("custops.runs")

# A plan whose time is over waits this long between looks at its last run.
END_RECHECK = timedelta(seconds=5)
# Transactions of due plans per scheduler tick, at most (a backlog after an
# outage drains over several ticks, and other duties get their turn).
TICK_ROUNDS = 20
# The engine's job states in which a run has ended.
ENDED_STATES = ("succeeded", "completed_with_failures", CANCELLED)


@dataclass
class _Written:
    """What one scheduler transaction wrote, for what follows its commit."""

    launched: list[tuple[Plan, RunLaunch]] = field(default_factory=list)
    made: set[str] = field(default_factory=set)  # the runs made now, by id
    over: list[tuple[Plan, scheduling.Step]] = field(default_factory=list)


@dataclass(frozen=True)
class RunView:
    run: Run
    progress: Progress | None  # None until its job exists
    counters: dict[str, int]


@dataclass(frozen=True)
class PlanTotals:
    runs: int
    counters: dict[str, int]
    failed: int
    dead: int
    budget_used: int
    test_runs: int = 0
    test_counters: dict[str, int] = field(default_factory=dict)


class RunUseCases:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: RunStore,
        jobs: EngineStore,
        audience: AudienceDirectory,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._store = store
        self._jobs = jobs
        self._audience = audience
        self._clock = clock
        # Set by the server: tells this process's idle workers a job is new.
        self.wake: Callable[[], None] = lambda: None
        self._estimates: set[asyncio.Task[None]] = set()  # kept until done

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
        return carried

    async def _one_by_one(self, now: datetime, limit: int) -> int:
        async with self._uow() as uow:
            keys = [_key(p) for p in await uow.plans.due(now, limit)]
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
        commit so that replicas share them."""
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

    async def start(self, plan: Plan, fire: datetime, trigger: runs.RunTrigger, run_id: str) -> Run:
        """The run of `plan` named `run_id`, made once however often this is called."""
        now = self._clock.now()
        run = self._new_run(plan, fire, trigger, fire, now, run_id)
        launch = self._launch_of(plan, run)
        async with self._uow() as uow:
            made = await uow.launches.add([launch], now)
            await uow.commit()
        if run.run_id in made:
            await self._started([(plan, launch)])
            return run
        return await self._adopt(plan, launch)

    def _new_run(
        self,
        plan: Plan,
        fire: datetime,
        trigger: runs.RunTrigger,
        named_for: datetime,
        now: datetime,
        run_id: str = "",
    ) -> Run:
        kind = runs.RunKind.DELIVERY
        run_id = run_id or runs.run_id(plan.shop_id, plan.plan_id, kind, named_for)
        job_id = uuid.uuid4().hex
        return Run(run_id, plan.shop_id, plan.plan_id, kind, trigger, fire, now, job_id)

    def _launch_of(self, plan: Plan, run: Run, test_members: list[str] | None = None) -> RunLaunch:
        payload = payload_of(run, plan)
        if test_members is not None:
            payload["test_members"] = test_members
            return RunLaunch(run, DELIVERY, payload, (TEST_SHARD,), len(test_members))
        cursors = tuple(shard_cursors(SHARDS, payload["listed"]))
        return RunLaunch(run, DELIVERY, payload, cursors, _known_total(plan))

    async def _started(self, launched: list[tuple[Plan, RunLaunch]]) -> None:
        """Runs just made: steered as their plans are now (a pause or end
        that landed meanwhile steered only the jobs that existed then),
        the workers told, and a total estimated where none was known."""
        if not launched:
            return
        now = self._clock.now()
        async with self._uow() as uow:
            states = await uow.plans.states([_key(plan) for plan, _ in launched])
        for plan, launch in launched:
            job_id = launch.run.job_id
            if states.get(_key(plan)) is PlanState.PAUSED:
                await self._jobs.pause(job_id, now)
            elif states.get(_key(plan)) is PlanState.ENDED:
                await self._jobs.cancel(job_id, now)
            if not launch.total:
                # The total only feeds progress and the ETA: neither the run
                # nor the scheduler waits for it (an exact count of a large
                # audience takes a second or more).
                task = asyncio.create_task(self._fill_total(plan, launch.run, job_id))
                self._estimates.add(task)
                task.add_done_callback(self._estimates.discard)
        self.wake()

    async def _adopt(self, plan: Plan, launch: RunLaunch) -> Run:
        """The run already made under the launch's id; one made by a version
        that wrote its job apart, and stopped in between, gets its job now."""
        run = await self._store.get(plan.shop_id, plan.plan_id, launch.run.run_id)
        assert run is not None, "a run is never deleted"
        if run.job_id or run.skip_reason:
            return run
        adopted = RunLaunch(
            Run(**{**run.__dict__, "job_id": launch.run.job_id}),
            launch.job_kind,
            launch.payload,
            launch.cursors,
            launch.total,
        )
        now = self._clock.now()
        job_id = await self._jobs.create_job(
            DELIVERY, run.run_id, dict(adopted.payload), list(adopted.cursors), now, now
        )
        await self._store.set_job(run.run_id, job_id)
        await self._started([(plan, adopted)])
        return Run(**{**run.__dict__, "job_id": job_id})

    async def _fill_total(self, plan: Plan, run: Run, job_id: str) -> None:
        rule = runs.run_audience(plan)
        if rule is None:
            return
        try:
            estimate = await self._audience.estimate(
                plan.shop_id, rule, run.fire_time, plan.spec.time_zone
            )
            total = estimate.count
            listed = listed_members(rule)
            if listed:  # the unknown ones are items too: each is skipped
                total += len(set(listed) - await self._audience.known(plan.shop_id, listed))
            await self._jobs.set_total(job_id, total)
        except Exception:  # the run goes on without a total
            log.warning("no audience estimate for run %s", run.run_id, exc_info=True)

    async def trigger(self, shop_id: str, plan_id: str, request_id: str) -> RunView:
        """A run now, by hand; the same request id gives the same run."""
        plan = await self._plan(shop_id, plan_id)
        if plan.state is not PlanState.ACTIVE:
            raise FailedPrecondition(
                f"plan {plan_id} is {plan.state.value}; only an active plan runs",
                reason="PLAN_NOT_ACTIVE",
            )
        now = self._clock.now()
        calendar = PlanCalendar.of(plan, now)
        for answer, reason, what in (
            (calendar.in_effect(now), "NOT_IN_EFFECT", "in effect"),
            (calendar.in_term(now), "OUTSIDE_TERM", "inside its operation term"),
        ):
            if not answer.value:
                then = f"; it is from {answer.until.isoformat()}" if answer.until else ""
                raise FailedPrecondition(f"plan {plan_id} is not {what} now{then}", reason=reason)
        manual = runs.manual_run_id(shop_id, plan_id, request_id) if request_id else ""
        kind = runs.RunKind.DELIVERY
        run = await self.start(
            plan, now, runs.RunTrigger.MANUAL, manual or runs.run_id(shop_id, plan_id, kind, now)
        )
        return await self._view(run)

    async def test(
        self, shop_id: str, plan_id: str, request_id: str, members: list[str]
    ) -> RunView:
        """A test run: the plan's actions — real grants and sends — for these
        members only, whatever its audience, time, frequency limit, budget
        and contact limits (consent still holds); any plan but an ended one.
        The same request id gives the same run."""
        plan = await self._plan(shop_id, plan_id)
        if plan.state is PlanState.ENDED:
            raise FailedPrecondition(f"plan {plan_id} has ended", reason="PLAN_ENDED")
        if not plan.spec.actions:
            raise FailedPrecondition(
                f"plan {plan_id} has no actions to test yet", reason="PLAN_INCOMPLETE"
            )
        strangers = [m for m in members if m not in await self._audience.known(shop_id, members)]
        if strangers:
            require(
                [
                    FieldViolation(
                        "test_member_ids",
                        f"members the audience system does not know: {', '.join(strangers[:5])}",
                    )
                ]
            )
        now = self._clock.now()
        kind = runs.RunKind.TEST
        run_id = (
            runs.test_run_id(shop_id, plan_id, request_id)
            if request_id
            else runs.run_id(shop_id, plan_id, kind, now)
        )
        run = Run(
            run_id, shop_id, plan_id, kind, runs.RunTrigger.MANUAL, now, now, uuid.uuid4().hex
        )
        launch = self._launch_of(plan, run, list(dict.fromkeys(members)))
        async with self._uow() as uow:
            made = await uow.launches.add([launch], now)
            await uow.commit()
        if run.run_id in made:
            await self._started([(plan, launch)])
        else:
            run = await self._run(shop_id, plan_id, run_id)  # the request's run, made before
        return await self._view(run)

    async def get(self, shop_id: str, plan_id: str, run_id: str) -> RunView:
        return await self._view(await self._run(shop_id, plan_id, run_id))

    async def page(
        self,
        shop_id: str,
        plan_id: str,
        state: str,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[RunView]:
        """Newest first; `state` ("" for any) is the engine's job state."""
        await self._plan(shop_id, plan_id)
        found = await self._store.page(shop_id, plan_id, state, after, limit)
        return [await self._view(r) for r in found]

    async def cancel(self, shop_id: str, plan_id: str, run_id: str) -> RunView:
        run = await self._run(shop_id, plan_id, run_id)
        audited = Audited(shop_id, run_resource(run))
        if run.job_id and not await self._jobs.cancel(run.job_id, self._clock.now(), audited):
            state = (await self._jobs.job(run.job_id))["state"]
            if state != CANCELLED:
                raise FailedPrecondition(
                    f"run {run_id} has ended ({state}); there is nothing to cancel",
                    reason="RUN_ENDED",
                )
        return await self._view(run)

    async def retry_failed(
        self, shop_id: str, plan_id: str, run_id: str, key: RequestKey | None = None
    ) -> tuple[RunView, int]:
        """Failed and dead-lettered members are tried again (e.g. after a
        restock); a retry with the same request id answers the first count."""
        run = await self._run(shop_id, plan_id, run_id)

        async def work() -> dict[str, Any]:
            return {"retried": await self._retry(shop_id, plan_id, run)}

        answer = await remembered(self._uow, shop_id, key, work)
        return await self._view(run), int(answer["retried"])

    async def _retry(self, shop_id: str, plan_id: str, run: Run) -> int:
        run_id = run.run_id
        plan = await self._plan(shop_id, plan_id)
        # A plan that ended by itself still finishes what its last runs began.
        if run.kind is runs.RunKind.DELIVERY and plan.state not in (
            PlanState.ACTIVE,
            PlanState.ENDED,
        ):
            raise FailedPrecondition(
                f"plan {plan_id} is {plan.state.value}; only an active or ended plan's "
                "members are granted",
                reason="PLAN_NOT_ACTIVE",
            )
        if await self._store.recoveries_of(run):
            raise FailedPrecondition(
                f"run {run_id} has been taken back; its failed members are not granted now",
                reason="RUN_RECOVERED",
            )
        count = 0
        if run.job_id:
            # Putting items back in line restarts the job: never a run someone
            # stopped (cancelled, or paused with its plan).
            state = (await self._jobs.job(run.job_id))["state"]
            if state in (CANCELLED, PAUSED):
                raise FailedPrecondition(
                    f"run {run_id} is {state}; its failed members are not retried"
                    + (" until the plan is resumed" if state == PAUSED else ""),
                    reason=f"RUN_{state.upper()}",
                )
            count = await self._jobs.retry_dead(
                run.job_id,
                self._clock.now(),
                states=("failed", "dead"),
                audited=Audited(shop_id, run_resource(run)),
            )
        return count

    async def recover(
        self, shop_id: str, plan_id: str, run_id: str, request_id: str, reason: str
    ) -> RunView:
        """Take back the still-unused benefits `run_id` granted, as a recovery
        run; the same request id meets the same recovery run."""
        target = await self._run(shop_id, plan_id, run_id)
        if target.kind is not runs.RunKind.DELIVERY:
            raise FailedPrecondition(
                f"run {run_id} is a recovery; only a delivery run's grants can be taken back",
                reason="NOT_A_DELIVERY_RUN",
            )
        recovery_id = runs.recovery_run_id(shop_id, plan_id, run_id, request_id)
        started = await self._store.get(shop_id, plan_id, recovery_id)
        if started is not None and started.job_id:
            return await self._view(started)  # a retried request: the same recovery
        # A run still going would grant behind the recovery's back.
        state = (await self._jobs.job(target.job_id))["state"] if target.job_id else "pending"
        if state not in ENDED_STATES:
            raise FailedPrecondition(
                f"run {run_id} is {state}; cancel it or let it finish before taking back "
                "what it granted",
                reason="RUN_NOT_ENDED",
            )
        now = self._clock.now()
        if target.job_id and await self._jobs.in_flight(target.job_id, now):
            raise Unavailable(
                f"run {run_id} was cancelled and a batch of it is still being recorded; "
                "try again shortly",
                reason="RUN_SETTLING",
            )
        run = await self._store.add(
            Run(
                recovery_id,
                shop_id,
                plan_id,
                runs.RunKind.RECOVERY,
                runs.RunTrigger.MANUAL,
                target.fire_time,
                now,
                target_run_id=run_id,
            )
        )
        if not run.job_id:
            total = await self._store.record_count(run_id, RecordKind.BENEFIT_GRANTED)
            payload = recovery.payload_of(
                recovery_id, shop_id, plan_id, run_id, reason or "recovered by the merchant"
            )
            job_id = await self._jobs.create_job(
                recovery.NAME, recovery_id, payload, [""], now, now, total
            )
            await self._store.set_job(recovery_id, job_id)
            self.wake()
            run = Run(**{**run.__dict__, "job_id": job_id})
        return await self._view(run)

    async def follow(self, plan: Plan) -> None:
        """A plan's delivery runs follow it: paused with it, resumed with it,
        cancelled when it ends. A recovery goes on: it is the remedy."""
        now = self._clock.now()
        delivery = runs.RunKind.DELIVERY
        for job_id in await self._store.job_ids(plan.shop_id, plan.plan_id, delivery):
            if plan.state is PlanState.PAUSED:
                await self._jobs.pause(job_id, now)
            elif plan.state is PlanState.ACTIVE:
                await self._jobs.resume(job_id, now)
            elif plan.state is PlanState.ENDED:
                await self._jobs.cancel(job_id, now)

    async def totals(self, shop_id: str, plan_id: str) -> PlanTotals:
        await self._plan(shop_id, plan_id)
        count, counters, used = await self._store.plan_totals(shop_id, plan_id)
        tests, test_counters, _ = await self._store.plan_totals(shop_id, plan_id, test=True)
        failures = await self._jobs.failure_counts(await self._store.job_ids(shop_id, plan_id))
        failed, dead = failures.get("failed", 0), failures.get("dead", 0)
        return PlanTotals(count, counters, failed, dead, used, tests, test_counters)

    async def _view(self, run: Run) -> RunView:
        progress = None
        if run.job_id:
            progress = await self._jobs.progress(run.job_id, self._clock.now())
        return RunView(run, progress, await self._store.counters(run.run_id))

    async def _run(self, shop_id: str, plan_id: str, run_id: str) -> Run:
        run = await self._store.get(shop_id, plan_id, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} of plan {plan_id!r}", reason="RUN_NOT_FOUND")
        return run

    async def _plan(self, shop_id: str, plan_id: str) -> Plan:
        async with self._uow() as uow:
            return await existing_plan(uow, shop_id, plan_id)


def _key(plan: Plan) -> tuple[str, str]:
    return plan.shop_id, plan.plan_id


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


def _known_total(plan: Plan) -> int:
    """The run's items when the plan names exactly its members (each is one
    item, known or not); 0 when only the audience system can count them."""
    rule = runs.run_audience(plan)
    return len(set(rule.member_ids)) if isinstance(rule, Members) else 0
