"""The scheduler's rules over fakes of its ports: which runs a tick makes,
once each, with their jobs, how plans move on, and that one plan's
trouble holds up no other (tests/integration/test_run_rules.py runs the
same rules on the real database and stand-ins)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from domain import audience as a
from domain import lifecycle
from domain import plan as d
from domain.runs import RunKind, RunTrigger, run_id
from tests.unit.fakes import Clock, FakeAudience, Store, run_use_cases

PUBLISHED = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
GRANT = d.GrantBenefits((d.BenefitGrant("points-100", d.BenefitKind.POINTS, 1),))


def published(
    plan_id: str,
    execution: str = "0 0 10 * * ? * 30",  # every day at 10:00 (UTC)
    audience: a.Rule | None = None,
    missed: d.MissedFirePolicy = d.MissedFirePolicy.SKIP,
    shop: str = "s1",
) -> d.Plan:
    spec = d.PlanSpec(
        display_name=plan_id,
        product_id="birthday",
        front_office=d.FrontOffice.MICRO_MALL,
        time_zone="UTC",
        audience=audience or a.Levels(("V1",)),
        time=d.PlanTime(execution=execution, missed_fire_policy=missed),
        actions=(GRANT,),
    )
    draft = d.Plan(shop, plan_id, spec, d.PlanState.DRAFT, 1, "a", PUBLISHED, "a", PUBLISHED)
    return lifecycle.publish(draft, "a", PUBLISHED)


def at_ten(day: int) -> datetime:
    return datetime(2026, 12, day, 10, 0, tzinfo=UTC)


def store_of(*plans: d.Plan) -> Store:
    return Store(plans={(p.shop_id, p.plan_id): p for p in plans})


def delivery_id(plan: d.Plan, fire: datetime) -> str:
    return run_id(plan.shop_id, plan.plan_id, RunKind.DELIVERY, fire)


async def test_a_due_fire_makes_one_run_with_its_job_and_the_plan_moves_to_the_next() -> None:
    plans = [published(f"p{i}") for i in range(250)]
    store = store_of(*plans)
    clock = Clock(at_ten(1) + timedelta(seconds=1))
    assert await run_use_cases(store, clock).tick(limit=100) == 250  # three transactions
    assert store.commits == 3
    for plan in plans:
        run = store.runs[delivery_id(plan, at_ten(1))]
        assert run.trigger is RunTrigger.SCHEDULE and run.job_id
        assert store.jobs[run.job_id]["state"] == "pending"
        assert len(store.jobs[run.job_id]["cursors"]) == 4  # the audience's shards
        moved = store.plans[plan.shop_id, plan.plan_id]
        assert moved.next_check_time == moved.next_fire_time == at_ten(2)
    assert len(store.runs) == 250
    # Nothing more is due until tomorrow at ten.
    assert await run_use_cases(store, clock).tick() == 0


async def test_two_replicas_holding_the_same_due_plan_make_one_run() -> None:
    plan = published("p1")
    store = store_of(plan)
    clock = Clock(at_ten(1) + timedelta(seconds=2))
    first, second = run_use_cases(store, clock), run_use_cases(store, clock)
    stored = store.plans["s1", "p1"]
    await first._step(stored, clock.now())
    await second._step(stored, clock.now())  # read before the first moved it on
    assert list(store.runs) == [delivery_id(plan, at_ten(1))]
    assert len(store.jobs) == 1


async def test_a_listed_audience_is_counted_without_asking_the_audience_system() -> None:
    listed = published("listed", audience=a.Members(("m1", "m2", "m2", "m3")))
    ruled = published("ruled")
    store = store_of(listed, ruled)
    audience = FakeAudience(size=1234)
    runs = run_use_cases(store, Clock(at_ten(1)), audience)
    await runs.tick()
    for task in list(runs._estimates):
        await task
    listed_job = store.runs[delivery_id(listed, at_ten(1))].job_id
    ruled_job = store.runs[delivery_id(ruled, at_ten(1))].job_id
    assert store.jobs[listed_job]["total"] == 3  # each listed member once
    assert store.jobs[listed_job]["cursors"][-1] == "unknown"  # their own shard
    assert store.jobs[ruled_job]["total"] == 1234
    assert audience.asked == 1


async def test_a_pause_that_lands_as_the_run_is_made_pauses_the_run() -> None:
    plan = published("p1")
    store = store_of(plan)

    def paused_meanwhile() -> None:
        key = ("s1", "p1")
        store.plans[key] = replace(store.plans[key], state=d.PlanState.PAUSED)

    store.on_commit = paused_meanwhile
    await run_use_cases(store, Clock(at_ten(1))).tick()
    (run,) = store.runs.values()
    assert store.jobs[run.job_id]["state"] == "paused"


async def test_missed_fires_are_skipped_on_record_and_the_plan_waits_for_the_next() -> None:
    plan = published("p1", missed=d.MissedFirePolicy.SKIP)
    store = store_of(plan)
    # Down for three days: the fires of the 1st to the 3rd were missed.
    await run_use_cases(store, Clock(at_ten(3) + timedelta(hours=1))).tick()
    assert not store.jobs
    skipped = sorted(store.runs.values(), key=lambda r: r.fire_time)
    assert [r.fire_time for r in skipped] == [at_ten(1)]
    assert skipped[0].skip_reason == "MISSED" and skipped[0].resume_time == at_ten(4)
    assert store.plans["s1", "p1"].next_check_time == at_ten(4)


async def test_run_once_catches_up_with_the_latest_missed_fire() -> None:
    plan = published("p1", missed=d.MissedFirePolicy.RUN_ONCE)
    store = store_of(plan)
    await run_use_cases(store, Clock(at_ten(3) + timedelta(hours=1))).tick()
    (run,) = [r for r in store.runs.values() if r.job_id]
    assert run.trigger is RunTrigger.CATCH_UP and run.fire_time == at_ten(3)
    assert run.run_id == delivery_id(plan, at_ten(1))  # named after the first missed


async def test_a_plan_the_database_refuses_holds_up_no_other_plan() -> None:
    good, bad = published("good"), published("bad")
    store = store_of(good, bad)
    store.refuse = delivery_id(bad, at_ten(1))
    clock = Clock(at_ten(1))
    assert await run_use_cases(store, clock).tick() == 2
    assert list(store.runs) == [delivery_id(good, at_ten(1))]
    assert store.plans["s1", "bad"].next_check_time == at_ten(1)  # tried again next tick
    store.refuse = ""
    await run_use_cases(store, clock).tick()
    assert delivery_id(bad, at_ten(1)) in store.runs


async def test_a_plan_whose_time_is_over_ends_once_its_last_run_has() -> None:
    once = published("once", execution="0 0 10 1 12 ? 2026 30")
    store = store_of(once)
    clock = Clock(at_ten(1))
    runs = run_use_cases(store, clock)
    await runs.tick()
    (run,) = store.runs.values()
    assert state(store, "once") is d.PlanState.ACTIVE  # its run goes on
    store.jobs[run.job_id]["state"] = "succeeded"
    clock.at += timedelta(days=1)
    await runs.tick()
    assert state(store, "once") is d.PlanState.ENDED


def state(store: Store, plan_id: str) -> d.PlanState:
    return store.plans["s1", plan_id].state
