"""Runs of plans: starting them (by schedule, catch-up or by hand), watching
and steering them, and the plan statistics summed over them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import runs
from domain.errors import FailedPrecondition, NotFound, Unavailable
from domain.plan import MissedFirePolicy, Plan, PlanState
from domain.plan_schedule import next_fire_times
from domain.ports import AudienceDirectory, Clock
from server.engine.store import CANCELLED, PAUSED, EngineStore, Progress
from server.persistence.audit_log import Audited
from server.runs import recovery
from server.runs.delivery import NAME as DELIVERY
from server.runs.delivery import SHARDS, payload_of, shard_cursors
from server.runs.store import Run, RunStore, run_resource
from server.usecases.plans import UnitOfWorkFactory, existing_plan

log = logging.getLogger("custops.runs")

# A fire time the scheduler meets later than this was missed (the service
# was down): the plan's missed-fire policy decides what happens.
LATE_AFTER = timedelta(minutes=1)
# The engine's job states in which a run has ended.
ENDED_STATES = ("succeeded", "completed_with_failures", CANCELLED)


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
        """The scheduler: start the runs of due plans; how many plans were due."""
        now = self._clock.now()
        async with self._uow() as uow:
            due = list(await uow.plans.due(now, limit))
        for plan in due:
            try:
                await self._fire(plan, now)
            except Exception:  # one plan's trouble must not hold up every other shop's
                log.warning("firing plan %s failed; next tick", plan.plan_id, exc_info=True)
        return len(due)

    async def _fire(self, plan: Plan, now: datetime) -> None:
        fire = plan.next_fire_time
        assert fire is not None
        anchor = plan.publish_time or fire
        zone = plan.spec.time_zone
        # The run is named after the stored fire time, which every replica
        # reads alike: a replica that sees the fire on time and one that sees
        # it late (and catches up to a later missed fire) meet one run.
        run_id = runs.run_id(plan.shop_id, plan.plan_id, runs.RunKind.DELIVERY, fire)
        if fire >= now - LATE_AFTER:
            await self.start(plan, fire, runs.RunTrigger.SCHEDULE, run_id)
            after = fire
        else:
            latest = runs.latest_missed_fire(plan, fire, now)
            if plan.spec.time.missed_fire_policy is MissedFirePolicy.RUN_ONCE:
                await self.start(plan, latest, runs.RunTrigger.CATCH_UP, run_id)
            after = max(now, latest)
        following = next_fire_times(plan.spec.time, zone, after, 1, anchor)
        async with self._uow() as uow:
            await uow.plans.advance(plan, following[0] if following else None)
            await uow.commit()

    async def start(
        self, plan: Plan, fire: datetime, trigger: runs.RunTrigger, run_id: str = ""
    ) -> Run:
        """The run of `plan` for `fire` (named by `run_id` when given), made
        once however often this is called."""
        now = self._clock.now()
        kind = runs.RunKind.DELIVERY
        run_id = run_id or runs.run_id(plan.shop_id, plan.plan_id, kind, fire)
        run = await self._store.add(
            Run(run_id, plan.shop_id, plan.plan_id, kind, trigger, fire, now)
        )
        if run.job_id:
            return run
        return await self._launch(plan, run, now)

    async def _launch(self, plan: Plan, run: Run, now: datetime) -> Run:
        job_id = await self._jobs.create_job(
            DELIVERY, run.run_id, payload_of(run, plan), shard_cursors(SHARDS), now, now
        )
        await self._store.set_job(run.run_id, job_id)
        # The plan as it is now, not as it was read: a pause or end that
        # landed meanwhile steered only the jobs that existed then.
        current = await self._plan(plan.shop_id, plan.plan_id)
        if current.state is PlanState.PAUSED:
            await self._jobs.pause(job_id, now)
        elif current.state is PlanState.ENDED:
            await self._jobs.cancel(job_id, now)
        else:
            self.wake()
        # The total only feeds progress and the ETA: neither the run nor the
        # scheduler waits for it (an exact count of a large audience takes
        # a second or more).
        task = asyncio.create_task(self._fill_total(plan, run, job_id))
        self._estimates.add(task)
        task.add_done_callback(self._estimates.discard)
        return Run(**{**run.__dict__, "job_id": job_id})

    async def _fill_total(self, plan: Plan, run: Run, job_id: str) -> None:
        rule = runs.run_audience(plan)
        if rule is None:
            return
        try:
            estimate = await self._audience.estimate(
                plan.shop_id, rule, run.fire_time, plan.spec.time_zone
            )
            await self._jobs.set_total(job_id, estimate.count)
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
        manual = runs.manual_run_id(shop_id, plan_id, request_id) if request_id else ""
        run = await self.start(plan, self._clock.now(), runs.RunTrigger.MANUAL, manual)
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

    async def retry_failed(self, shop_id: str, plan_id: str, run_id: str) -> tuple[RunView, int]:
        """Failed and dead-lettered members are tried again (e.g. after a restock)."""
        run = await self._run(shop_id, plan_id, run_id)
        plan = await self._plan(shop_id, plan_id)
        if run.kind is runs.RunKind.DELIVERY and plan.state is not PlanState.ACTIVE:
            raise FailedPrecondition(
                f"plan {plan_id} is {plan.state.value}; only an active plan's members are granted",
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
        return await self._view(run), count

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
            total = await self._store.record_count(run_id, recovery.GRANTED)
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
        failures = await self._jobs.failure_counts(await self._store.job_ids(shop_id, plan_id))
        return PlanTotals(count, counters, failures.get("failed", 0), failures.get("dead", 0), used)

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
