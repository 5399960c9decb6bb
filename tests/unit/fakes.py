"""Fakes of the ports and the unit of work the plan and run use cases
need, in memory (as cosmicpython's tests/unit/test_services.py fakes its
repository): their rules run without a server, a database or a network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, cast

from domain.audience import Rule
from domain.downstream_ports import AudienceSize, BenefitCatalog, TemplateInfo
from domain.errors import Aborted
from domain.plan import Plan, PlanState
from domain.ports import RequestKey, RunLaunch, SchedulePlace
from domain.runs import Run
from domain.shop_policy import ShopPolicy
from server.persistence.run_store import RunStore
from server.persistence.task_store import TaskStore
from server.usecases.plans import PlanUseCases, UnitOfWorkFactory
from server.usecases.runs import RunUseCases


@dataclass
class Clock:
    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass
class Store:
    """What the database would hold: plans, runs and jobs."""

    plans: dict[tuple[str, str], Plan] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    commits: int = 0
    # Called as a transaction commits: another caller's change landing then.
    on_commit: Callable[[], None] = lambda: None
    # A run id whose launch fails (a row the database refuses).
    refuse: str = ""
    requests: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    policies: dict[str, ShopPolicy] = field(default_factory=dict)


class FakePlans:
    def __init__(self, store: Store, writes: list[Callable[[], None]]) -> None:
        self._store, self._writes = store, writes

    async def due(
        self, now: datetime, limit: int, only: tuple[str, str] | None = None
    ) -> Sequence[Plan]:
        due = [
            p
            for key, p in self._store.plans.items()
            if p.state in (PlanState.ACTIVE, PlanState.SCHEDULED)
            and p.next_check_time is not None
            and p.next_check_time <= now
            and only in (None, key)
        ]
        return sorted(due, key=lambda p: (p.next_check_time, p.shop_id, p.plan_id))[:limit]

    async def get(self, shop_id: str, plan_id: str) -> Plan | None:
        return self._store.plans.get((shop_id, plan_id))

    async def states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PlanState]:
        return {k: self._store.plans[k].state for k in keys if k in self._store.plans}

    async def add(self, plan: Plan) -> None:
        self._writes.append(partial(self._store.plans.__setitem__, _key(plan), plan))

    async def save(self, plan: Plan, before: Plan) -> None:
        stored = self._store.plans.get(_key(plan))
        if stored is None or stored.revision != before.revision:
            raise Aborted(f"plan {plan.plan_id} changed meanwhile", reason="ETAG_MISMATCH")
        self._writes.append(partial(self._store.plans.__setitem__, _key(plan), plan))

    async def advance(self, moves: Sequence[tuple[Plan, SchedulePlace]]) -> None:
        for plan, place in moves:
            self._writes.append(partial(self._move, plan, place))

    def _move(self, plan: Plan, place: SchedulePlace) -> None:
        stored = self._store.plans[_key(plan)]
        if stored.next_check_time != plan.next_check_time:
            return  # another replica moved it first
        state = stored.state
        if place.activate and state is PlanState.SCHEDULED:
            state = PlanState.ACTIVE
        self._store.plans[_key(plan)] = replace(
            stored,
            state=state,
            schedule_cursor=place.cursor,
            next_check_time=place.next_check,
            next_fire_time=place.next_fire,
        )


class FakeLaunches:
    def __init__(self, store: Store, writes: list[Callable[[], None]]) -> None:
        self._store, self._writes = store, writes

    async def add(self, launches: Sequence[RunLaunch], now: datetime) -> set[str]:
        made = set()
        for launch in launches:
            run = launch.run
            if run.run_id == self._store.refuse:
                raise RuntimeError(f"the database refuses run {run.run_id}")
            if run.run_id in self._store.runs:
                continue
            made.add(run.run_id)
            self._writes.append(partial(self._write, launch))
        return made

    def _write(self, launch: RunLaunch) -> None:
        run = launch.run
        self._store.runs[run.run_id] = run
        self._store.jobs[run.job_id] = {
            "state": "pending",
            "cursors": launch.cursors,
            "total": launch.total,
            "payload": launch.payload,
        }

    def _skip(self, run: Run) -> None:
        self._store.runs.setdefault(run.run_id, run)

    async def add_skipped(self, skipped: Sequence[Run]) -> None:
        for run in skipped:
            self._writes.append(partial(self._skip, run))


class FakeRequests:
    """The request log: a key is reserved in the change's transaction and
    answered with its outcome at commit."""

    def __init__(self, store: Store, writes: list[Callable[[], None]]) -> None:
        self._store, self._writes = store, writes

    async def find(self, shop_id: str, key: RequestKey) -> dict[str, Any] | None:
        return self._store.requests.get((shop_id, key.request_id))

    async def reserve(self, shop_id: str, key: RequestKey) -> None:
        self._writes.append(partial(self._reserved, (shop_id, key.request_id)))

    def _reserved(self, at: tuple[str, str]) -> None:
        self._store.requests.setdefault(at, None)

    async def complete(self, shop_id: str, key: RequestKey, outcome: dict[str, Any]) -> None:
        write = partial(self._store.requests.__setitem__, (shop_id, key.request_id), outcome)
        self._writes.append(write)


class FakePolicies:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, shop_id: str) -> ShopPolicy:
        return self._store.policies.get(shop_id, ShopPolicy(shop_id))

    async def save(self, policy: ShopPolicy, before: ShopPolicy) -> None:
        self._store.policies[policy.shop_id] = policy


class FakeUnitOfWork:
    """Writes land at commit, all together; leaving without commit drops them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writes: list[Callable[[], None]] = []
        self.plans = FakePlans(store, self._writes)
        self.launches = FakeLaunches(store, self._writes)
        self.requests = FakeRequests(store, self._writes)
        self.shop_policies = FakePolicies(store)

    async def __aenter__(self) -> FakeUnitOfWork:
        self._writes.clear()
        return self

    async def __aexit__(self, kind: object, error: object, tb: object) -> None:
        self._writes.clear()

    async def commit(self) -> None:
        for write in self._writes:
            write()
        self._writes.clear()
        self._store.commits += 1
        self._store.on_commit()


class FakeJobs:
    """The task engine's store, as far as starting runs steers it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def pause(self, job_id: str, now: datetime) -> bool:
        self._store.jobs[job_id]["state"] = "paused"
        return True

    async def cancel(self, job_id: str, now: datetime, audited: object = None) -> bool:
        self._store.jobs[job_id]["state"] = "cancelled"
        return True

    async def set_total(self, job_id: str, total: int) -> None:
        self._store.jobs[job_id]["total"] = total


class FakeRuns:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, shop_id: str, plan_id: str, run_id: str) -> Run | None:
        return self._store.runs.get(run_id)

    async def unfinished(self, shop_id: str, plan_id: str, ended: Sequence[str]) -> bool:
        return any(
            r.plan_id == plan_id and r.job_id and self._store.jobs[r.job_id]["state"] not in ended
            for r in self._store.runs.values()
        )


class FakeAudience:
    """Every rule matches `size` members; nobody listed is unknown."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self.asked = 0

    async def estimate(self, shop_id: str, rule: Rule, at: datetime, zone: str) -> AudienceSize:
        self.asked += 1
        return AudienceSize(self.size, True)

    async def known(self, shop_id: str, member_ids: Sequence[str]) -> set[str]:
        return set(member_ids)

    async def match_rules(
        self, shop_id: str, member_ids: Sequence[str], checks: Sequence[Any], as_of: datetime
    ) -> dict[str, set[str]]:
        raise AssertionError("the scheduler never matches rules")


class FakeBenefitCatalog:
    """The benefit platform's templates, as publishing checks them."""

    def __init__(self, templates: dict[str, TemplateInfo]) -> None:
        self.templates = templates

    async def describe(self, shop_id: str, template_ids: Sequence[str]) -> dict[str, TemplateInfo]:
        return {t: self.templates[t] for t in template_ids if t in self.templates}

    async def inventory(self, shop_id: str, template_ids: Sequence[str]) -> list[Any]:
        raise AssertionError("not asked by these tests")

    async def recover_unused(self, shop_id: str, source: str, reason: str, limit: int) -> list[str]:
        raise AssertionError("not asked by these tests")


def plan_use_cases(
    store: Store,
    clock: Clock,
    audience: FakeAudience | None = None,
    benefits: FakeBenefitCatalog | None = None,
) -> PlanUseCases:
    return PlanUseCases(
        cast(UnitOfWorkFactory, lambda: FakeUnitOfWork(store)),
        clock,
        audience or FakeAudience(),
        benefits=cast(BenefitCatalog | None, benefits),
    )


def run_use_cases(store: Store, clock: Clock, audience: FakeAudience | None = None) -> RunUseCases:
    """A replica's run use cases over the fakes (two over one store: two replicas)."""
    return RunUseCases(
        cast(UnitOfWorkFactory, lambda: FakeUnitOfWork(store)),
        cast(RunStore, FakeRuns(store)),
        cast(TaskStore, FakeJobs(store)),
        audience or FakeAudience(),
        clock,
    )


def _key(plan: Plan) -> tuple[str, str]:
    return plan.shop_id, plan.plan_id
