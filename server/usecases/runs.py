"""Runs of plans: started by hand or as a test, read, cancelled, retried,
recovered, following their plan, and the plan statistics summed over them.
The scheduler's part is run_scheduling; making a run is run_launches."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from domain import runs, triggers
from domain.errors import FailedPrecondition, FieldViolation, Unavailable, require
from domain.plan import Plan, PlanState
from domain.plan_calendar import PlanCalendar
from domain.ports import RequestKey
from domain.runs import Run
from server import run_traces
from server.persistence.audit_log import Audited
from server.persistence.launches import run_resource
from server.persistence.tables import CANCELLED, PAUSED
from server.runs import recovery
from server.usecases.once import remembered
from server.usecases.run_launches import ENDED_STATES, PlanTotals, RunView
from server.usecases.run_scheduling import RunScheduling
from server.usecases.trigger_sweep import TriggerSweep


class RunUseCases(RunScheduling, TriggerSweep):
    """What the run calls do; the scheduler and run launching are its bases."""

    async def trigger(self, shop_id: str, plan_id: str, request_id: str) -> RunView:
        """A run now, by hand; the same request id gives the same run."""
        plan = await self._plan(shop_id, plan_id)
        if plan.state is not PlanState.ACTIVE:
            raise FailedPrecondition(
                f"plan {plan_id} is {plan.state.value}; only an active plan runs",
                reason="PLAN_NOT_ACTIVE",
            )
        now = self._clock.now()
        if triggers.trigger_of(plan) is not None:
            raise FailedPrecondition(
                f"plan {plan_id} is fired by members' events ({plan.spec.time.execution}): "
                "it has no run to start by hand; a test run acts on named members",
                reason="EVENT_TRIGGERED",
            )
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
            run_id,
            shop_id,
            plan_id,
            kind,
            runs.RunTrigger.MANUAL,
            now,
            now,
            uuid.uuid4().hex,
            grants=runs.grants(plan),
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

    async def once(
        self,
        shop_id: str,
        plan_id: str,
        key: RequestKey | None,
        call: Callable[[], Awaitable[RunView]],
    ) -> RunView:
        """A call about one run (start, test, recover, cancel) at most once per
        request id, through the request log every side-effecting call shares:
        a replay meets the run the first call answered with, as it is now;
        another request under the same id is REQUEST_ID_REUSED."""

        async def work() -> dict[str, Any]:
            return {"run_id": (await call()).run.run_id}

        answer = await remembered(self._uow, shop_id, key, work)
        return await self.get(shop_id, plan_id, str(answer["run_id"]))

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

        async def work() -> dict[str, Any]:  # under the request log, as every check
            found = await self._run(shop_id, plan_id, run_id)
            return {"retried": await self._retry(shop_id, plan_id, found)}

        answer = await remembered(self._uow, shop_id, key, work)
        run = await self._run(shop_id, plan_id, run_id)
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
            total = (await self._store.counters(run_id)).get("granted", 0)
            payload = recovery.payload_of(
                recovery_id, shop_id, plan_id, run_id, reason or "recovered by the merchant"
            )
            run_traces.begin(self.tracer, payload, "plan run recovery", recovery_id)
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
