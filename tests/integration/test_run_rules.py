"""The rules of running plans, on a clock the test moves (the clock port):
one run per (plan, fire time) however many schedulers race, missed fires,
birthday selection, frequency limits, the budget, quiet hours, and run
control (pause, cancel, retry).

The witnesses are the stand-ins' own books — the benefit platform's
instances and the message channel's outbox — and the audience stand-in's
population for who should have been chosen; the platform's counters are
checked beside them, never instead. Nothing sleeps for time to pass: the
clock is set, the scheduler ticked, and every wait is a bounded poll for
work the server does on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.audience.v1 import audience_pb2
from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.client import AsyncCustopsClient, CustopsError
from custops.notify.v1 import notify_pb2
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.stand_ins.population import LEVELS, Member
from server.tasks.worker import Worker
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import (
    NOW,
    POPULATION,
    _audience,
    _finished,
    _granted,
    immediate_plan,
    running,
)
from tests.sdk_names import sdk_method

__all__ = ["running"]  # the fixture, imported for pytest

SHANGHAI = "Asia/Shanghai"
AUCKLAND = "Pacific/Auckland"  # 09:00 there is 20:00 UTC the day before
DAILY_AT_9 = "0 0 9 * * ? * 31"
TOP = ("V4", "V5")  # about a tenth of the population: small, quick runs
ENDED = (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES, pb.RUN_STATE_CANCELLED)


def at(
    day: date, hour: int = 9, minute: int = 0, second: int = 0, zone: str = SHANGHAI
) -> datetime:
    """A wall time in `zone`, as a UTC instant."""
    local = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC)


def levels(*names: str) -> audience_pb2.AudienceRule:
    return audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=list(names)))


def daily_plan(policy: pb.MissedFirePolicy.ValueType = pb.MISSED_FIRE_POLICY_SKIP) -> pb.Plan:
    plan = immediate_plan()
    plan.display_name = "Daily at nine"
    plan.audience.CopyFrom(levels(*TOP))
    plan.time.execution = DAILY_AT_9
    plan.time.missed_fire_policy = policy
    return plan


@dataclass
class Ops:
    """A platform on a stepping clock, a client, and a shop of this test's own."""

    platform: Platform
    client: AsyncCustopsClient
    shop: str = field(default_factory=lambda: f"shop-{uuid.uuid4().hex[:8]}")

    @property
    def clock(self) -> SteppingClock:
        clock = self.platform.clock
        assert isinstance(clock, SteppingClock)
        return clock

    def set_clock(self, instant: datetime) -> None:
        self.clock.current = instant

    async def publish(self, plan: pb.Plan) -> pb.Plan:
        draft = (
            await self.client.plans.create_plan(pb.CreatePlanRequest(shop_id=self.shop, plan=plan))
        ).plan
        published: pb.Plan = (
            await self.client.plans.publish_plan(
                pb.PublishPlanRequest(shop_id=self.shop, plan_id=draft.plan_id, etag=draft.etag)
            )
        ).plan
        return published

    async def plan(self, plan: pb.Plan) -> pb.Plan:
        got: pb.Plan = (
            await self.client.plans.get_plan(
                pb.GetPlanRequest(shop_id=self.shop, plan_id=plan.plan_id)
            )
        ).plan
        return got

    async def step(self, action: str, plan: pb.Plan) -> pb.Plan:
        current = await self.plan(plan)
        request = getattr(pb, f"{action}PlanRequest")(
            shop_id=self.shop, plan_id=plan.plan_id, etag=current.etag
        )
        moved: pb.Plan = (await sdk_method(self.client.plans, f"{action}Plan")(request)).plan
        return moved

    async def fire(self, plan: pb.Plan, fire: datetime) -> pb.PlanRun:
        """Move the clock just past `fire`, tick the scheduler, and wait for
        the one run of that fire time to end."""
        self.set_clock(fire + timedelta(seconds=10))
        assert self.platform.runs is not None
        await self.platform.runs.tick()
        (run,) = [r for r in await self.runs(plan) if r.fire_time.ToDatetime(UTC) == fire]
        return await _finished(self.client, plan, run.run_id)

    async def runs(self, plan: pb.Plan) -> list[pb.PlanRun]:
        """Every run of the plan, newest first (skipped fires left out)."""
        return [r for r in await self.listed(plan) if r.state != pb.RUN_STATE_SKIPPED]

    async def skipped(self, plan: pb.Plan) -> list[pb.PlanRun]:
        """The plan's skipped fires, newest first."""
        return [r for r in await self.listed(plan) if r.state == pb.RUN_STATE_SKIPPED]

    async def listed(self, plan: pb.Plan) -> list[pb.PlanRun]:
        """Everything ListPlanRuns lists of the plan, newest first."""
        found: list[pb.PlanRun] = []
        token = ""
        for _ in range(100):
            page = await self.client.plans.list_plan_runs(
                pb.ListPlanRunsRequest(
                    shop_id=self.shop, plan_id=plan.plan_id, page_size=500, page_token=token
                )
            ).first_page()
            found += page.runs
            token = page.next_page_token
            if not token:
                break
        return found

    async def run(self, plan: pb.Plan, run_id: str) -> pb.PlanRun:
        reply: pb.GetPlanRunResponse = await self.client.plans.get_plan_run(
            pb.GetPlanRunRequest(shop_id=self.shop, plan_id=plan.plan_id, run_id=run_id)
        )
        return reply.run

    async def trigger(self, plan: pb.Plan, request_id: str) -> pb.PlanRun:
        reply: pb.TriggerPlanRunResponse = await self.client.plans.trigger_plan_run(
            pb.TriggerPlanRunRequest(shop_id=self.shop, plan_id=plan.plan_id, request_id=request_id)
        )
        return reply.run

    async def all_finished(self, plan: pb.Plan, count: int) -> list[pb.PlanRun]:
        """The plan's runs once `count` of them exist and all have ended."""
        for _ in range(600):  # bounded: the server's scheduler and workers do the runs
            runs = await self.runs(plan)
            assert len(runs) <= count, f"more runs than fire times: {runs}"
            if len(runs) == count and all(r.state in ENDED for r in runs):
                return runs
            await asyncio.sleep(0.1)
        raise AssertionError(f"{count} runs did not finish")

    async def until(
        self, plan: pb.Plan, run_id: str, done: Callable[[pb.PlanRun], bool]
    ) -> pb.PlanRun:
        for _ in range(600):  # bounded
            run = await self.run(plan, run_id)
            if done(run):
                return run
            await asyncio.sleep(0.1)
        raise AssertionError(f"run {run_id} never got there")

    def members(self, chosen: Callable[[Member], bool]) -> set[str]:
        """The shop's members the predicate picks, from the audience stand-in's
        own population (computed here, not by the platform)."""
        assert self.platform.stubs is not None
        population = self.platform.stubs.population
        base = population.base(self.shop)
        return {
            m.member_id
            for i in range(population.size)
            if chosen(m := population.member(self.shop, i, base))
        }

    def granted_in(self, plan: pb.Plan, run_id: str) -> Counter[str]:
        """Benefit instances per member that one run granted, as the benefit
        platform holds them (the run is in every grant's idempotency key)."""
        assert self.platform.stubs is not None
        return Counter(
            i.member_id
            for i in self.platform.stubs.benefits.instances.values()
            if i.source == f"plans/{plan.plan_id}" and f"/runs/{run_id}/" in i.idempotency_key
        )

    def sent(self, plan: pb.Plan) -> Counter[str]:
        """Messages per member the message channel delivered for the plan."""
        assert self.platform.stubs is not None and self.platform.stubs.notifications is not None
        outbox = self.platform.stubs.notifications.outbox
        return Counter(
            m.message.member_id
            for (shop, _member), sent in outbox.by_member.items()
            if shop == self.shop
            for m in sent
            if m.message.source == f"plans/{plan.plan_id}"
        )

    def worker(self) -> Worker:
        """A worker of the engine driven by the test (the replica's loop, by hand)."""
        assert self.platform.jobs is not None
        return Worker(
            self.platform.jobs, self.platform.job_kinds, self.clock.now, self.platform.buckets
        )

    async def end_all(self) -> None:
        """End the shop's plans, so no later test on the same database meets them."""
        listed = await self.client.plans.list_plans(
            pb.ListPlansRequest(shop_id=self.shop, page_size=500)
        ).first_page()
        for plan in listed.plans:
            if plan.state != pb.PLAN_STATE_ENDED:
                with contextlib.suppress(CustopsError):
                    await self.client.plans.end_plan(
                        pb.EndPlanRequest(shop_id=self.shop, plan_id=plan.plan_id)
                    )


@pytest.fixture
async def ops(running: tuple[Platform, AsyncCustopsClient]) -> AsyncIterator[Ops]:
    """The running server of test_runs: its scheduler and workers work on their own."""
    o = Ops(*running)
    yield o
    await o.end_all()


@pytest.fixture
async def manual(database_url: str) -> AsyncIterator[Ops]:
    """A server without its own workers or scheduler: the test ticks the
    scheduler and runs the engine's shards itself, one at a time."""
    platform = Platform(
        settings(database_url, stubs_population=POPULATION, engine_concurrency=0),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
        o = Ops(platform, client)
        yield o
        await o.end_all()
    await platform.stop(grace=1)


# One run per (plan, fire time).


async def test_two_schedulers_racing_make_one_run_per_fire_time(database_url: str) -> None:
    """Two servers on one database (and one benefit platform) tick the same
    due plan at the same moment, on top of their own scheduler loops."""
    clock = SteppingClock(NOW)
    first = Platform(
        settings(database_url, stubs_population=POPULATION, engine_poll=0.05), clock=clock
    )
    await first.start()
    stubs = f"127.0.0.1:{first.stubs_port}"
    second = Platform(
        settings(
            database_url,
            engine_poll=0.05,
            stubs="external",
            audience_target=stubs,
            benefit_target=stubs,
            notification_target=stubs,
        ),
        clock=clock,
    )
    try:
        await second.start()
        async with AsyncCustopsClient(f"127.0.0.1:{first.port}", timeout=30) as client:
            o = Ops(first, client)
            try:
                plan = await o.publish(daily_plan())
                fires = [at(date(2026, 11, 25) + timedelta(days=d)) for d in range(3)]
                for fire in fires:
                    o.set_clock(fire + timedelta(seconds=5))
                    assert first.runs is not None and second.runs is not None
                    await asyncio.gather(
                        first.runs.tick(), second.runs.tick(), first.runs.tick(), second.runs.tick()
                    )
                runs = await o.all_finished(plan, len(fires))
                assert sorted(r.fire_time.ToDatetime(UTC) for r in runs) == fires
                assert {r.trigger for r in runs} == {pb.RUN_TRIGGER_SCHEDULE}
                assert {r.state for r in runs} == {pb.RUN_STATE_SUCCEEDED}
                audience = await _audience(first, plan)
                assert audience
                for r in runs:
                    granted = o.granted_in(plan, r.run_id)
                    assert set(granted) == audience and set(granted.values()) == {1}
                    assert r.progress.granted == len(audience)
                total = _granted(first, plan.plan_id)
                assert set(total.values()) == {len(fires)}  # and nothing outside the runs
            finally:
                await o.end_all()
    finally:
        await second.stop(grace=1)
        await first.stop(grace=1)


async def test_an_immediate_plan_fires_once(manual: Ops) -> None:
    """Once its run is made, the clock moving on (a second, a day) starts no
    other, whatever its missed-fire policy."""
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    plan.time.missed_fire_policy = pb.MISSED_FIRE_POLICY_RUN_ONCE
    plan = await manual.publish(plan)
    assert plan.next_fire_time.ToDatetime(UTC) == NOW
    assert manual.platform.runs is not None
    for later in (timedelta(0), timedelta(seconds=1), timedelta(minutes=5), timedelta(days=1)):
        manual.set_clock(NOW + later)
        await manual.platform.runs.tick()
        await manual.worker().drain()
        (run,) = await manual.runs(plan)
        assert run.fire_time.ToDatetime(UTC) == NOW and run.state == pb.RUN_STATE_SUCCEEDED
        assert not (await manual.plan(plan)).HasField("next_fire_time")
    audience = await _audience(manual.platform, plan)
    granted = _granted(manual.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}


async def test_a_plan_fires_once_its_effective_time_comes(manual: Ops) -> None:
    plan = daily_plan()
    plan.time.effective = "0 0 0 1 * * * 3"  # a day after publishing
    plan = await manual.publish(plan)
    assert plan.state == pb.PLAN_STATE_SCHEDULED
    assert plan.next_fire_time.ToDatetime(UTC) == at(date(2026, 11, 26))
    manual.set_clock(at(date(2026, 11, 26), 9, 0, 10))
    assert manual.platform.runs is not None
    await manual.platform.runs.tick()
    (run,) = await manual.runs(plan)
    assert run.fire_time.ToDatetime(UTC) == at(date(2026, 11, 26))
    assert (await manual.plan(plan)).state == pb.PLAN_STATE_ACTIVE
    # The fire of the 25th came before the plan was in effect: on record as skipped.
    (skipped,) = await manual.skipped(plan)
    assert skipped.fire_time.ToDatetime(UTC) == at(date(2026, 11, 25))
    assert skipped.skip_reason == "NOT_IN_EFFECT"
    assert skipped.resume_time.ToDatetime(UTC) == run.fire_time.ToDatetime(UTC)


# Missed fires.


@pytest.mark.parametrize(
    "policy", [pb.MISSED_FIRE_POLICY_RUN_ONCE, pb.MISSED_FIRE_POLICY_SKIP], ids=["run-once", "skip"]
)
async def test_fires_missed_while_down_follow_the_plans_policy(
    ops: Ops, policy: pb.MissedFirePolicy.ValueType
) -> None:
    plan = await ops.publish(daily_plan(policy))
    assert plan.next_fire_time.ToDatetime(UTC) == at(date(2026, 11, 25))
    # Down from before 25 November 09:00 until 28 November noon: four fires missed.
    ops.set_clock(at(date(2026, 11, 28), 12))
    assert ops.platform.runs is not None
    await ops.platform.runs.tick()
    # Both go on with the next fire still to come.
    assert (await ops.plan(plan)).next_fire_time.ToDatetime(UTC) == at(date(2026, 11, 29))
    # The fires passed over are on record: from the 25th, up to the one run
    # once (the 28th) or the next to come (the 29th).
    (missed,) = await ops.skipped(plan)
    assert missed.skip_reason == "MISSED"
    assert missed.fire_time.ToDatetime(UTC) == at(date(2026, 11, 25))
    resume = 28 if policy == pb.MISSED_FIRE_POLICY_RUN_ONCE else 29
    assert missed.resume_time.ToDatetime(UTC) == at(date(2026, 11, resume))
    audience = await _audience(ops.platform, plan)
    if policy == pb.MISSED_FIRE_POLICY_RUN_ONCE:
        (late,) = await ops.all_finished(plan, 1)
        assert late.trigger == pb.RUN_TRIGGER_CATCH_UP
        assert late.fire_time.ToDatetime(UTC) == at(date(2026, 11, 28))  # the latest missed
        assert late.state == pb.RUN_STATE_SUCCEEDED
        granted = ops.granted_in(plan, late.run_id)
        assert set(granted) == audience and set(granted.values()) == {1}
    else:
        assert await ops.runs(plan) == []
        assert _granted(ops.platform, plan.plan_id) == Counter()
    ops.set_clock(at(date(2026, 11, 29), 9, 0, 10))
    await ops.platform.runs.tick()
    expected = 2 if policy == pb.MISSED_FIRE_POLICY_RUN_ONCE else 1
    runs = await ops.all_finished(plan, expected)
    assert runs[0].trigger == pb.RUN_TRIGGER_SCHEDULE
    assert runs[0].fire_time.ToDatetime(UTC) == at(date(2026, 11, 29))
    assert set(ops.granted_in(plan, runs[0].run_id)) == audience
    assert set(_granted(ops.platform, plan.plan_id).values()) == {expected}
    assert (await ops.plan(plan)).next_fire_time.ToDatetime(UTC) == at(date(2026, 11, 30))


async def test_a_dense_schedule_catches_up_its_latest_missed_fire(manual: Ops) -> None:
    """Every ten seconds, down for two days: 17,280 fires missed. The one late
    run is for the latest of them, not for one a day old."""
    plan = daily_plan(pb.MISSED_FIRE_POLICY_RUN_ONCE)
    plan.time.execution = "*/10 * * * * ? * 30"
    plan = await manual.publish(plan)
    assert plan.next_fire_time.ToDatetime(UTC) == NOW
    back = NOW + timedelta(days=2, seconds=5)
    manual.set_clock(back)
    assert manual.platform.runs is not None
    await manual.platform.runs.tick()
    (late,) = await manual.runs(plan)
    assert late.trigger == pb.RUN_TRIGGER_CATCH_UP
    assert late.fire_time.ToDatetime(UTC) == NOW + timedelta(days=2)
    assert (await manual.plan(plan)).next_fire_time.ToDatetime(UTC) == back + timedelta(seconds=5)
    assert await manual.worker().drain() == 4
    assert set(manual.granted_in(plan, late.run_id)) == await _audience(manual.platform, plan)


async def test_a_fire_seen_on_time_by_one_replica_and_late_by_another_is_one_run(
    manual: Ops,
) -> None:
    """Every ten seconds: replica A meets the stored fire 59 s after it (on
    time: it runs it and the five after it, all on time), replica B, which
    read the same row, 75 s after (late: it catches up to a later missed
    fire). Both name the first run after the stored fire: one run."""
    plan = daily_plan(pb.MISSED_FIRE_POLICY_RUN_ONCE)
    plan.time.execution = "*/10 * * * * ? * 30"
    plan = await manual.publish(plan)
    runs_ = manual.platform.runs
    assert runs_ is not None
    # Both replicas hold the row as it was before either moved it on (white
    # box: the interleaving of two processes, played in one).
    stored = await runs_._plan(manual.shop, plan.plan_id)
    await runs_._step(stored, NOW + timedelta(seconds=59))
    await runs_._step(stored, NOW + timedelta(seconds=75))
    started = [r for r in await manual.runs(plan) if r.state != pb.RUN_STATE_SKIPPED]
    firsts = [r for r in started if r.fire_time.ToDatetime(UTC) == NOW]
    assert [r.trigger for r in firsts] == [pb.RUN_TRIGGER_SCHEDULE]
    assert len({r.run_id for r in started}) == len(started) == 6


# Birthdays.


def born(*days: tuple[int, int]) -> Callable[[Member], bool]:
    wanted = set(days)
    return lambda m: (m.birth_month, m.birth_day) in wanted


def in_month(month: int) -> Callable[[Member], bool]:
    return lambda m: m.birth_month == month


FEB_22_TO_29 = born(*((2, d) for d in range(22, 30)))
MAR_1_TO_7 = born(*((3, d) for d in range(1, 8)))

# execution, then each run's local date with whose birthday it is for. The
# plan's zone is Auckland, where 09:00 is still the day before in UTC.
BIRTHDAY_CASES = {
    # 2027 has no 29 February: those born on it are celebrated on the 28th.
    "day-2027": ("0 0 9 * * * * 41", [(date(2027, 2, 28), born((2, 28), (2, 29)))]),
    "day-2028": (
        "0 0 9 * * * * 41",
        [(date(2028, 2, 28), born((2, 28))), (date(2028, 2, 29), born((2, 29)))],
    ),
    # 3 days ahead: 25 Feb 2027 + 3 is Sunday 28 Feb, in the week of 22-28 Feb
    # (and the 29 February-born); 26 Feb + 3 is Monday 1 March, a new week.
    "week-3-ahead": (
        "0 0 9 3 * * * 42",
        [(date(2027, 2, 25), FEB_22_TO_29), (date(2027, 2, 26), MAR_1_TO_7)],
    ),
    # 3 days ahead: 28 Jan + 3 is in January, 29 Jan + 3 in February.
    "month-3-ahead": (
        "0 0 9 3 * * * 43",
        [(date(2027, 1, 28), in_month(1)), (date(2027, 1, 29), in_month(2))],
    ),
}


@pytest.mark.parametrize("case", list(BIRTHDAY_CASES))
async def test_birthday_runs_choose_by_the_run_date_in_the_plans_zone(ops: Ops, case: str) -> None:
    execution, days = BIRTHDAY_CASES[case]
    ops.shop = "s1"  # its population has nine members born on 29 February
    assert ops.members(born((2, 29)))
    plan = immediate_plan()
    plan.display_name = f"Birthday {case}"
    plan.audience.CopyFrom(levels(*LEVELS))
    plan.time.execution = execution
    plan.time_zone = AUCKLAND
    ops.set_clock(at(days[0][0] - timedelta(days=1), 12, zone=AUCKLAND))
    plan = await ops.publish(plan)
    assert ops.platform.runs is not None
    for day, chosen in days:
        fire = at(day, zone=AUCKLAND)
        assert fire.date() < day  # the UTC date is another day's
        run = await ops.fire(plan, fire)
        assert run.trigger == pb.RUN_TRIGGER_SCHEDULE
        expected = ops.members(chosen)
        assert expected
        granted = ops.granted_in(plan, run.run_id)
        assert set(granted) == expected and set(granted.values()) == {1}
        assert run.progress.targeted == len(expected)


# Frequency limits across runs.


async def test_a_limit_per_plan_counts_every_run(ops: Ops) -> None:
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    plan.limits.frequency.CopyFrom(pb.FrequencyLimit(max_times=2, window=pb.FREQUENCY_WINDOW_PLAN))
    plan = await ops.publish(plan)
    first = await _finished(ops.client, plan)
    audience = await _audience(ops.platform, plan)
    assert first.progress.granted == len(audience) and not first.progress.skipped
    second = await _finished(ops.client, plan, (await ops.trigger(plan, "second")).run_id)
    assert second.progress.granted == len(audience) and not second.progress.skipped
    third = await _finished(ops.client, plan, (await ops.trigger(plan, "third")).run_id)
    assert third.state == pb.RUN_STATE_SUCCEEDED
    assert third.progress.targeted == len(audience)
    assert third.progress.granted == 0
    assert dict(third.progress.skipped) == {"FREQUENCY_LIMIT": len(audience)}
    assert ops.granted_in(plan, third.run_id) == Counter()
    granted = _granted(ops.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {2}


async def test_a_limit_per_period_starts_again_at_each_fire_time(ops: Ops) -> None:
    plan = daily_plan()
    plan.limits.frequency.CopyFrom(
        pb.FrequencyLimit(max_times=1, window=pb.FREQUENCY_WINDOW_PERIOD)
    )
    plan = await ops.publish(plan)
    assert ops.platform.runs is not None
    for day in (date(2026, 11, 25), date(2026, 11, 26)):
        run = await ops.fire(plan, at(day))
        assert not run.progress.skipped
    # A run by hand is a period of its own too (at an instant as a real clock
    # gives it, to the microsecond).
    ops.set_clock(at(date(2026, 11, 26), 15, 30, 7) + timedelta(microseconds=123456))
    manual = await _finished(ops.client, plan, (await ops.trigger(plan, "by-hand")).run_id)
    assert manual.state == pb.RUN_STATE_SUCCEEDED and not manual.progress.skipped
    audience = await _audience(ops.platform, plan)
    assert manual.progress.granted == len(audience)
    granted = _granted(ops.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {3}


async def test_a_limit_per_birthday_year_grants_once_per_birthday(ops: Ops) -> None:
    """A birthday-month plan meets its members every day of their month: once
    per birthday year, so again next year."""
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    plan.time.execution = "0 0 9 * * * * 43"
    plan.time.missed_fire_policy = pb.MISSED_FIRE_POLICY_RUN_ONCE
    plan.limits.frequency.CopyFrom(
        pb.FrequencyLimit(max_times=1, window=pb.FREQUENCY_WINDOW_BIRTHDAY_YEAR)
    )
    ops.set_clock(at(date(2027, 1, 31), 12))
    plan = await ops.publish(plan)
    february = ops.members(lambda m: m.level in TOP and m.birth_month == 2)
    assert ops.platform.runs is not None
    for day, granted, skipped in (
        (date(2027, 2, 1), len(february), 0),
        (date(2027, 2, 2), 0, len(february)),
        (date(2028, 2, 1), len(february), 0),  # a catch-up run: the next birthday year
    ):
        run = await ops.fire(plan, at(day))
        assert run.progress.targeted == len(february)
        assert run.progress.granted == granted
        assert run.progress.skipped.get("FREQUENCY_LIMIT", 0) == skipped
    total = _granted(ops.platform, plan.plan_id)
    assert set(total) == february and set(total.values()) == {2}


async def test_a_birthday_week_across_new_year_is_one_birthday(ops: Ops) -> None:
    """The week of Monday 28 December 2026 holds birthdays of 2026 and of
    2027. A birthday-week plan meets those members on each of its seven
    days; once per birthday year means once that week, whichever year the
    run's date is in. The next week is other members' birthdays."""
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*LEVELS))
    plan.time.execution = "0 0 9 * * * * 42"
    plan.limits.frequency.CopyFrom(
        pb.FrequencyLimit(max_times=1, window=pb.FREQUENCY_WINDOW_BIRTHDAY_YEAR)
    )
    ops.set_clock(at(date(2026, 12, 27), 12))
    plan = await ops.publish(plan)
    new_year = {(12, d) for d in range(28, 32)} | {(1, d) for d in range(1, 4)}
    week = ops.members(lambda m: (m.birth_month, m.birth_day) in new_year)
    after = ops.members(born(*((1, d) for d in range(4, 11))))
    assert week and after
    monday = date(2026, 12, 28)
    for day in (monday + timedelta(days=n) for n in range(7)):
        run = await ops.fire(plan, at(day))
        assert run.progress.targeted == len(week)
        if day == monday:
            assert run.progress.granted == len(week) and not run.progress.skipped
        else:
            assert run.progress.granted == 0, day
            assert dict(run.progress.skipped) == {"FREQUENCY_LIMIT": len(week)}
    run = await ops.fire(plan, at(date(2027, 1, 4)))
    assert run.progress.granted == len(after) and not run.progress.skipped
    granted = _granted(ops.platform, plan.plan_id)
    assert set(granted) == week | after and set(granted.values()) == {1}


# The budget.


async def test_the_budget_stops_a_run(ops: Ops) -> None:
    plan = immediate_plan()  # everyone but V0: far more members than the budget covers
    plan.actions[0].grant_benefit.benefits[0].quantity = 2
    plan.limits.total_budget = 200  # units: 100 members of 2 each
    plan = await ops.publish(plan)
    run = await _finished(ops.client, plan)
    audience = await _audience(ops.platform, plan)
    assert len(audience) > 100
    granted = _granted(ops.platform, plan.plan_id)
    assert sum(granted.values()) == 200 and len(granted) == 100 and set(granted) <= audience
    assert set(granted.values()) == {2}
    assert run.state == pb.RUN_STATE_SUCCEEDED
    assert run.progress.targeted == len(audience)
    assert run.progress.granted == 200
    assert dict(run.progress.skipped) == {"BUDGET_EXHAUSTED": len(audience) - 100}
    # The budget is the plan's: a later run finds it spent.
    again = await _finished(ops.client, plan, (await ops.trigger(plan, "again")).run_id)
    assert again.progress.granted == 0
    assert dict(again.progress.skipped) == {"BUDGET_EXHAUSTED": len(audience)}
    assert sum(_granted(ops.platform, plan.plan_id).values()) == 200
    stats = (
        await ops.client.plans.get_plan_statistics(
            pb.GetPlanStatisticsRequest(shop_id=ops.shop, plan_id=plan.plan_id)
        )
    ).statistics
    assert stats.budget_used == 200 and stats.benefits_granted == 200
    # Raised, it covers 50 more members in the next run, and no more.
    current = await ops.plan(plan)
    await ops.client.plans.update_plan(
        pb.UpdatePlanRequest(
            shop_id=ops.shop,
            plan=pb.Plan(
                plan_id=plan.plan_id, etag=current.etag, limits=pb.PlanLimits(total_budget=300)
            ),
            update_mask=FieldMask(paths=["limits.total_budget"]),
        )
    )
    more = await _finished(ops.client, plan, (await ops.trigger(plan, "more")).run_id)
    assert more.progress.granted == 100
    assert dict(more.progress.skipped) == {"BUDGET_EXHAUSTED": len(audience) - 50}
    assert sum(_granted(ops.platform, plan.plan_id).values()) == 300


# Quiet hours.


def messaging_plan(policy: pb.QuietHoursPolicy.ValueType) -> pb.Plan:
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    plan.actions.append(
        pb.Action(
            send_message=pb.SendMessageAction(
                channel=notify_pb2.MESSAGE_CHANNEL_APP_PUSH, template_id="good-night"
            )
        )
    )
    plan.limits.quiet_hours.CopyFrom(pb.QuietHours(start="22:00", end="08:00", policy=policy))
    return plan


async def test_quiet_hours_defer_messages_until_they_end(ops: Ops) -> None:
    ops.set_clock(at(date(2026, 11, 24), 23))  # in quiet hours, Shanghai
    plan = await ops.publish(messaging_plan(pb.QUIET_HOURS_POLICY_DEFER))
    audience = await _audience(ops.platform, plan)
    run = await _first_run(ops, plan)
    # Grants go out at once; the messages wait.
    run = await ops.until(plan, run.run_id, lambda r: r.progress.granted == len(audience))
    granted = _granted(ops.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}
    assert ops.sent(plan) == Counter()
    assert run.progress.sent == 0 and run.state == pb.RUN_STATE_RUNNING
    # A minute before they end, the retry sweeper has nothing due.
    ops.set_clock(at(date(2026, 11, 25), 7, 59))
    assert await ops.worker().retry_due() == 0
    assert ops.sent(plan) == Counter()
    # At 08:00 the sweeper sends them, once each, and grants nothing more.
    ops.set_clock(at(date(2026, 11, 25), 8))
    run = await _finished(ops.client, plan, run.run_id)
    assert run.state == pb.RUN_STATE_SUCCEEDED
    sent = ops.sent(plan)
    assert set(sent) == audience and set(sent.values()) == {1}
    assert run.progress.sent == len(audience) and run.progress.granted == len(audience)
    assert not run.progress.skipped
    assert await ops.worker().retry_due() == 0
    assert ops.sent(plan) == sent
    assert _granted(ops.platform, plan.plan_id) == granted


async def test_quiet_hours_drop_messages_but_not_grants(ops: Ops) -> None:
    ops.set_clock(at(date(2026, 11, 24), 23))
    plan = await ops.publish(messaging_plan(pb.QUIET_HOURS_POLICY_DROP))
    run = await _finished(ops.client, plan)
    audience = await _audience(ops.platform, plan)
    granted = _granted(ops.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}
    assert run.state == pb.RUN_STATE_SUCCEEDED
    assert run.progress.granted == len(audience) and run.progress.sent == 0
    assert dict(run.progress.skipped) == {"QUIET_HOURS": len(audience)}
    # Dropped, not postponed: nothing goes out after they end either.
    ops.set_clock(at(date(2026, 11, 25), 9))
    assert await ops.worker().retry_due() == 0
    assert ops.sent(plan) == Counter()


async def _first_run(ops: Ops, plan: pb.Plan) -> pb.PlanRun:
    for _ in range(600):  # bounded: the scheduler starts it
        runs = await ops.runs(plan)
        if runs:
            return runs[-1]
        await asyncio.sleep(0.1)
    raise AssertionError("no run started")


# Run control: pause, cancel, retry.


async def _stock(ops: Ops, inventory: int, create: bool = False) -> None:
    """The shop's own gift template "limited-gift", with this much stock."""
    template = benefit_pb2.BenefitTemplate(
        template_id="limited-gift",
        kind=benefit_pb2.BENEFIT_KIND_GIFT,
        display_name="A gift while stocks last",
        validity_days=30,
        inventory=inventory,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ops.platform.stubs_port}") as channel:
        benefits = benefit_pb2_grpc.BenefitServiceStub(channel)
        if create:
            await benefits.CreateBenefitTemplate(
                benefit_pb2.CreateBenefitTemplateRequest(shop_id=ops.shop, template=template)
            )
        else:
            await benefits.UpdateBenefitTemplate(
                benefit_pb2.UpdateBenefitTemplateRequest(
                    shop_id=ops.shop, template=template, update_mask=FieldMask(paths=["inventory"])
                )
            )


def gift_plan(audience: tuple[str, ...]) -> pb.Plan:
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*audience))
    grant = plan.actions[0].grant_benefit.benefits[0]
    grant.template_id, grant.kind = "limited-gift", benefit_pb2.BENEFIT_KIND_GIFT
    return plan


async def _retry(
    ops: Ops, plan: pb.Plan, run_id: str, request_id: str = ""
) -> pb.RetryFailedItemsResponse:
    reply: pb.RetryFailedItemsResponse = await ops.client.plans.retry_failed_items(
        pb.RetryFailedItemsRequest(
            shop_id=ops.shop, plan_id=plan.plan_id, run_id=run_id, request_id=request_id
        )
    )
    return reply


async def _started(manual: Ops, stock: int) -> tuple[pb.Plan, pb.PlanRun, set[str]]:
    """A plan of a gift with too little stock, whose run has done one of its
    four shards: some members granted, others failed OUT_OF_STOCK."""
    await _stock(manual, stock, create=True)
    plan = await manual.publish(gift_plan(("V1", "V2", "V3", "V4", "V5")))
    assert manual.platform.runs is not None
    await manual.platform.runs.tick()
    (run,) = await manual.runs(plan)
    assert run.state == pb.RUN_STATE_PENDING
    assert await manual.worker().run_once()
    first = set(_granted(manual.platform, plan.plan_id))
    assert len(first) == stock
    run = await manual.run(plan, run.run_id)
    assert run.progress.failed > 0
    return plan, run, first


async def test_pausing_a_plan_pauses_its_run_and_resuming_finishes_it(manual: Ops) -> None:
    plan, run, first = await _started(manual, stock=30)
    paused = await manual.step("Pause", plan)
    assert paused.state == pb.PLAN_STATE_PAUSED
    assert (await manual.run(plan, run.run_id)).state == pb.RUN_STATE_PAUSED
    # No worker takes a shard of it, however long it stays paused; the
    # scheduler starts no other run, nor may anyone by hand, and its failed
    # members wait too.
    await _stock(manual, 10_000)
    worker = manual.worker()
    manual.set_clock(NOW + timedelta(hours=6))
    assert await worker.drain() == 0
    assert await worker.retry_due() == 0
    assert manual.platform.runs is not None
    await manual.platform.runs.tick()
    assert len(await manual.runs(plan)) == 1
    with pytest.raises(CustopsError) as err:
        await manual.trigger(plan, "while-paused")
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(CustopsError) as err:
        await _retry(manual, plan, run.run_id)
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert await worker.drain() == 0
    assert await worker.retry_due() == 0
    assert (await manual.run(plan, run.run_id)).state == pb.RUN_STATE_PAUSED
    assert set(_granted(manual.platform, plan.plan_id)) == first
    # Resumed, the run goes on where it stopped; its failed members, retried
    # after the restock, are granted once.
    resumed = await manual.step("Resume", plan)
    assert resumed.state == pb.PLAN_STATE_ACTIVE
    assert (await manual.run(plan, run.run_id)).state == pb.RUN_STATE_RUNNING
    assert await worker.drain() == 3
    ended = await manual.run(plan, run.run_id)
    assert ended.state == pb.RUN_STATE_COMPLETED_WITH_FAILURES
    failed = ended.progress.failed
    assert (await _retry(manual, plan, run.run_id)).retried_count == failed
    assert await worker.retry_due() == failed
    done = await manual.run(plan, run.run_id)
    audience = await _audience(manual.platform, plan)
    assert done.state == pb.RUN_STATE_SUCCEEDED
    assert done.progress.granted == len(audience) and done.progress.done == len(audience)
    granted = _granted(manual.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}


async def test_a_cancelled_run_grants_nothing_more(manual: Ops) -> None:
    plan, run, first = await _started(manual, stock=30)
    await _stock(manual, 10_000)
    reply = await manual.client.plans.cancel_plan_run(
        pb.CancelPlanRunRequest(shop_id=manual.shop, plan_id=plan.plan_id, run_id=run.run_id)
    )
    assert reply.run.state == pb.RUN_STATE_CANCELLED
    assert reply.run.HasField("end_time")
    worker = manual.worker()
    assert await worker.drain() == 0
    assert await worker.retry_due() == 0
    # Nor are its failed members tried again: it was stopped on purpose.
    with pytest.raises(CustopsError) as err:
        await _retry(manual, plan, run.run_id)
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert await worker.retry_due() == 0
    assert set(_granted(manual.platform, plan.plan_id)) == first
    # Cancelling it again is no error; the plan itself goes on.
    again = await manual.client.plans.cancel_plan_run(
        pb.CancelPlanRunRequest(shop_id=manual.shop, plan_id=plan.plan_id, run_id=run.run_id)
    )
    assert again.run.state == pb.RUN_STATE_CANCELLED
    assert (await manual.plan(plan)).state == pb.PLAN_STATE_ACTIVE
    # A run that has ended cannot be cancelled.
    other = await manual.trigger(plan, "after-cancel")
    assert await worker.drain() == 4
    assert (await manual.run(plan, other.run_id)).state == pb.RUN_STATE_SUCCEEDED
    with pytest.raises(CustopsError) as err:
        await manual.client.plans.cancel_plan_run(
            pb.CancelPlanRunRequest(shop_id=manual.shop, plan_id=plan.plan_id, run_id=other.run_id)
        )
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert set(manual.granted_in(plan, other.run_id).values()) == {1}


async def test_retrying_failed_items_after_a_restock_grants_them_once(ops: Ops) -> None:
    await _stock(ops, 50, create=True)
    plan = await ops.publish(gift_plan(TOP))
    run = await _finished(ops.client, plan)
    audience = await _audience(ops.platform, plan)
    short = len(audience) - 50
    assert run.state == pb.RUN_STATE_COMPLETED_WITH_FAILURES
    assert run.progress.granted == 50 and run.progress.failed == short
    assert run.progress.done == len(audience)
    first = _granted(ops.platform, plan.plan_id)
    assert len(first) == 50 and set(first.values()) == {1}
    assert ops.platform.jobs is not None
    failures = await ops.platform.jobs.failures(await _job_id(ops, plan, run.run_id))
    assert {f.reason for f in failures} == {"OUT_OF_STOCK"} and len(failures) == short
    await _stock(ops, 1000)
    retried = await _retry(ops, plan, run.run_id, request_id="after-restock")
    assert retried.retried_count == short
    # The same request again answers the same count, and puts nothing back.
    assert (await _retry(ops, plan, run.run_id, "after-restock")).retried_count == short
    run = await _finished(ops.client, plan, run.run_id)
    assert run.state == pb.RUN_STATE_SUCCEEDED
    assert run.progress.granted == len(audience) and run.progress.failed == 0
    granted = _granted(ops.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}
    # Nothing is left to retry; asking again changes nothing.
    again = await _retry(ops, plan, run.run_id)
    assert again.retried_count == 0 and again.run.state == pb.RUN_STATE_SUCCEEDED
    assert _granted(ops.platform, plan.plan_id) == granted


async def _job_id(ops: Ops, plan: pb.Plan, run_id: str) -> str:
    assert ops.platform.runs is not None
    view = await ops.platform.runs.get(ops.shop, plan.plan_id, run_id)
    return view.run.job_id
