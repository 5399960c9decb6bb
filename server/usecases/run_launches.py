"""Launching a plan's runs: a run and its engine job made once, steered as
its plan is, its total estimated; and what every run use case reads."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.trace import NoOpTracer, Tracer

from domain import runs
from domain.audience import Members, listed_members
from domain.downstream_ports import AudienceDirectory
from domain.errors import NotFound
from domain.plan import Plan, PlanState
from domain.ports import Clock, RunLaunch
from domain.runs import Run
from server import run_traces
from server.metrics import NO_METRICS, Metrics
from server.persistence.run_store import RunStore
from server.persistence.tables import CANCELLED
from server.persistence.task_progress import Progress
from server.persistence.task_store import TaskStore
from server.runs.delivery import EVENT_SHARD, SHARDS, TEST_SHARD, payload_of, shard_cursors
from server.runs.delivery import NAME as DELIVERY
from server.usecases.plans import UnitOfWorkFactory, existing_plan

log = logging.getLogger("custops.runs")


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
    test_runs: int = 0
    test_counters: dict[str, int] = field(default_factory=dict)


class RunLaunches:
    """The base of RunUseCases: making runs and reading them."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: RunStore,
        jobs: TaskStore,
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
        # Set by the server: the scheduler's lateness and polls are measured,
        # and each run made is a trace (server.run_traces).
        self.metrics: Metrics = NO_METRICS
        self.tracer: Tracer = NoOpTracer()
        self._estimates: set[asyncio.Task[None]] = set()  # kept until done

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
        return Run(
            run_id,
            plan.shop_id,
            plan.plan_id,
            kind,
            trigger,
            fire,
            now,
            job_id,
            grants=runs.grants(plan),
        )

    def _launch_of(
        self,
        plan: Plan,
        run: Run,
        test_members: list[str] | None = None,
        event_members: list[tuple[str, str]] | None = None,
    ) -> RunLaunch:
        payload = payload_of(run, plan)
        run_traces.begin(self.tracer, payload, "plan run", run.run_id)
        if test_members is not None:
            payload["test_members"] = test_members
            return RunLaunch(run, DELIVERY, payload, (TEST_SHARD,), len(test_members))
        if event_members is not None:
            payload["event_members"] = [list(pair) for pair in event_members]
            return RunLaunch(run, DELIVERY, payload, (f"{EVENT_SHARD}/0",), len(event_members))
        cursors = tuple(shard_cursors(SHARDS, payload["listed"]))
        return RunLaunch(run, DELIVERY, payload, cursors, _known_total(plan))

    async def _started(self, launched: list[tuple[Plan, RunLaunch]]) -> None:
        """Runs just made: steered as their plans are now (a pause or end
        that landed meanwhile steered only the jobs that existed then),
        the workers told, and a total estimated where none was known."""
        if not launched:
            return
        now = self._clock.now()
        for _, launch in launched:
            if launch.run.trigger is not runs.RunTrigger.MANUAL:
                self.metrics.fired((now - launch.run.fire_time).total_seconds())
        async with self._uow() as uow:
            states = await uow.plans.states([plan_key(plan) for plan, _ in launched])
        for plan, launch in launched:
            job_id = launch.run.job_id
            if states.get(plan_key(plan)) is PlanState.PAUSED:
                await self._jobs.pause(job_id, now)
            elif states.get(plan_key(plan)) is PlanState.ENDED:
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


def plan_key(plan: Plan) -> tuple[str, str]:
    return plan.shop_id, plan.plan_id


def _known_total(plan: Plan) -> int:
    """The run's items when the plan names exactly its members (each is one
    item, known or not); 0 when only the audience system can count them."""
    rule = runs.run_audience(plan)
    return len(set(rule.member_ids)) if isinstance(rule, Members) else 0
