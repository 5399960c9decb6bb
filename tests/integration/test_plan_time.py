"""A plan's time, through gRPC on the real scheduler with a clock the test
moves (docs/time.md): one test for each defect that the one calendar
mended, each failing on the code before it — the member-day effect every
day with a doubled headline, a plan whose term was over staying active for
ever, a weekends-only plan firing on weekdays, a birthday preview counting
the whole audience, and a budget skip using up the member's frequency slot.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from google.protobuf.field_mask_pb2 import FieldMask

from custops.audit.v1 import audit_pb2 as apb
from custops.benefit.v1 import benefit_pb2
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.persistence.member_decisions import Limits
from server.stand_ins.population import Member
from tests.integration.test_run_rules import (
    DAILY_AT_9,
    TOP,
    Ops,
    _stock,
    at,
    daily_plan,
    gift_plan,
    levels,
    manual,
    running,
)
from tests.integration.test_runs import _audience, _granted

__all__ = ["manual", "running"]  # the fixtures, imported for pytest

# NOW (test_runs) is Tuesday 24 November 2026, 10:00 in Shanghai.


async def _tick(ops: Ops, instant: datetime, drain: bool = True) -> None:
    """Move the clock to `instant`, let the scheduler decide, run what it started."""
    ops.set_clock(instant)
    assert ops.platform.runs is not None
    await ops.platform.runs.tick()
    if drain:
        await ops.worker().drain()


def _member(ops: Ops, chosen: Callable[[Member], bool]) -> str:
    return sorted(ops.members(chosen))[0]


async def _view(ops: Ops, member: str, office: int) -> spb.GetMemberViewResponse:
    reply: spb.GetMemberViewResponse = await ops.client.scenario.get_member_view(
        spb.GetMemberViewRequest(shop_id=ops.shop, member_id=member, front_office=office)  # type: ignore[arg-type]
    )
    return reply


# 1. Member day: its effect on member day only, and its headline once.


async def test_member_day_effects_hold_on_member_day_only(manual: Ops) -> None:
    draft = (
        await manual.client.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id=manual.shop,
                template_id="member_day",
                overrides=pb.Plan(audience=levels(*TOP)),
                override_mask=FieldMask(paths=["audience"]),
            )
        )
    ).plan
    assert draft.time.execution == "0 0 9 8 * * * 33"  # 09:00 on the 8th
    plan = (
        await manual.client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=manual.shop, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    member = _member(manual, lambda m: m.level in TOP)
    retail = pb.FRONT_OFFICE_RETAIL
    member_day = (at(date(2026, 12, 8), 0), at(date(2026, 12, 9), 0))

    async def shown(instant: datetime) -> tuple[list[spb.ApplicablePlan], list[spb.ApplicablePlan]]:
        manual.set_clock(instant)
        view = await _view(manual, member, retail)
        return (
            [p for p in view.plans if p.plan_id == plan.plan_id],
            [p for p in view.upcoming_plans if p.plan_id == plan.plan_id],
        )

    async def checkout_kinds(instant: datetime) -> set[int]:
        manual.set_clock(instant)
        reply = await manual.client.scenario.get_checkout_benefits(
            spb.GetCheckoutBenefitsRequest(
                shop_id=manual.shop, member_id=member, store_id="store-1", order_amount=10_000
            )
        )
        return {e.kind for p in reply.plans if p.plan_id == plan.plan_id for e in p.effects}

    # Before member day: not applying, but upcoming with its window's start.
    applying, upcoming = await shown(at(date(2026, 12, 7), 12))
    assert applying == []
    (next_day,) = upcoming
    assert next_day.window_start_time.ToDatetime(UTC) == member_day[0]
    assert next_day.window_end_time.ToDatetime(UTC) == member_day[1]
    assert await checkout_kinds(at(date(2026, 12, 7), 12)) == set()
    # On member day, from midnight, even before the 09:00 run: the whole day.
    for hour in (0, 8, 23):
        applying, upcoming = await shown(at(date(2026, 12, 8), hour, 30))
        (today,) = applying
        assert upcoming == []
        assert today.headline == "Member day: double points"  # not "Member day: Member day: ..."
        assert [e.kind for e in today.effects] == [benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER]
        assert today.window_start_time.ToDatetime(UTC) == member_day[0]
        assert today.window_end_time.ToDatetime(UTC) == member_day[1]
        assert await checkout_kinds(at(date(2026, 12, 8), hour, 30)) == {
            benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER
        }
    # The member-day run grants double points valid on member day only.
    await _tick(manual, at(date(2026, 12, 8), 9, 0, 10))
    benefits = (
        await manual.client.scenario.list_member_benefits(
            spb.ListMemberBenefitsRequest(
                shop_id=manual.shop, member_id=member, plan_id=plan.plan_id
            )
        ).first_page()
    ).benefits
    (double,) = benefits
    assert double.kind == benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER
    # From its grant (it did not exist before) to the end of member day.
    assert double.valid_from == double.grant_time
    assert double.valid_until.ToDatetime(UTC) == member_day[1]
    # The day after: gone, next month's shown as upcoming.
    applying, upcoming = await shown(member_day[1])
    assert applying == []
    assert [p.window_start_time.ToDatetime(UTC) for p in upcoming] == [at(date(2027, 1, 8), 0)]
    assert await checkout_kinds(member_day[1]) == set()


# 2. A plan whose term is over ends by itself, after its last run.


async def test_a_plan_ends_by_itself_once_its_term_is_over_and_its_last_run_ended(
    manual: Ops,
) -> None:
    plan = daily_plan()
    plan.time.term = "0-0 0-0 0-0 25-26 11-11 * 2026-2026 2"  # 25 and 26 November
    plan = await manual.publish(plan)
    assert plan.state == pb.PLAN_STATE_SCHEDULED  # not in term on the 24th
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    # The second and last run starts, and is still going when the term is over.
    await _tick(manual, at(date(2026, 11, 26), 9, 0, 10), drain=False)
    await _tick(manual, at(date(2026, 11, 27), 0, 0, 5), drain=False)
    waiting = await manual.plan(plan)
    assert waiting.state == pb.PLAN_STATE_ACTIVE  # its last run is still going
    assert not waiting.HasField("next_fire_time")
    await manual.worker().drain()
    await _tick(manual, at(date(2026, 11, 27), 0, 0, 15))
    ended = await manual.plan(plan)
    assert ended.state == pb.PLAN_STATE_ENDED
    assert ended.end_reason == "TERM_OVER"
    assert ended.end_time.ToDatetime(UTC) == at(date(2026, 11, 27), 0, 0, 15)
    runs = await manual.runs(plan)
    assert sorted(r.fire_time.ToDatetime(UTC) for r in runs) == [
        at(date(2026, 11, 25)),
        at(date(2026, 11, 26)),
    ]
    # The audit log says the platform ended it, and why.
    entries = (
        await manual.client.audit.list_audit_entries(
            apb.ListAuditEntriesRequest(shop_id=manual.shop, resource=f"plans/{plan.plan_id}")
        ).first_page()
    ).entries
    last = next(e for e in entries if e.resource == f"plans/{plan.plan_id}")
    assert last.caller == "platform"
    assert last.rpc == "custops.platform.Scheduler/EndPlan"
    assert last.after["state"] == "ended" and last.after["end_reason"] == "TERM_OVER"
    # Its last run's failed items may still be retried.
    retried = await manual.client.plans.retry_failed_items(
        pb.RetryFailedItemsRequest(shop_id=manual.shop, plan_id=plan.plan_id, run_id=runs[0].run_id)
    )
    assert retried.retried_count == 0
    # Nothing more happens.
    await _tick(manual, at(date(2026, 11, 28), 9, 0, 10))
    assert len(await manual.runs(plan)) == 2


# 3. A recurring effective time: the scheduler and the member view agree.


async def test_a_weekends_only_plan_fires_and_shows_on_weekends_only(manual: Ops) -> None:
    plan = daily_plan()
    plan.time.effective = "* * * * * 6,7 * 32"  # Saturdays and Sundays
    plan.front_office = pb.FRONT_OFFICE_MICRO_MALL
    plan = await manual.publish(plan)
    assert plan.state == pb.PLAN_STATE_SCHEDULED  # Tuesday
    member = _member(manual, lambda m: m.level in TOP)
    shown: dict[date, bool] = {}
    for day in range(25, 31):  # Wednesday 25 to Monday 30 November
        today = date(2026, 11, day)
        await _tick(manual, at(today, 9, 0, 10))
        manual.set_clock(at(today, 12))
        view = await _view(manual, member, pb.FRONT_OFFICE_MICRO_MALL)
        shown[today] = any(p.plan_id == plan.plan_id for p in view.plans)
    fired = sorted(r.fire_time.ToDatetime(UTC) for r in await manual.runs(plan))
    assert fired == [at(date(2026, 11, 28)), at(date(2026, 11, 29))]
    assert {d for d, yes in shown.items() if yes} == {date(2026, 11, 28), date(2026, 11, 29)}
    # The weekday fires are on record as skipped, a record per stretch.
    skipped = {
        (r.fire_time.ToDatetime(UTC), r.skip_reason, r.resume_time.ToDatetime(UTC))
        for r in await manual.skipped(plan)
    }
    assert skipped == {
        (at(date(2026, 11, 25)), "NOT_IN_EFFECT", at(date(2026, 11, 28))),
        (at(date(2026, 11, 30)), "NOT_IN_EFFECT", at(date(2026, 12, 5))),
    }


# 4. Preview of a birthday plan counts each run's birthdays.


def _birthday_in(scope: int, run_day: date) -> Callable[[Member], bool]:
    """Members a birthday run on `run_day` is for (day, week or month)."""
    monday = run_day - timedelta(days=run_day.weekday())
    week = {(d.month, d.day) for d in (monday + timedelta(days=n) for n in range(7))}
    return {
        41: lambda m: (m.birth_month, m.birth_day) == (run_day.month, run_day.day),
        42: lambda m: (m.birth_month, m.birth_day) in week,
        43: lambda m: m.birth_month == run_day.month,
    }[scope]


def _top_born_in(scope: int, run_day: date) -> Callable[[Member], bool]:
    born = _birthday_in(scope, run_day)
    return lambda m: m.level in TOP and born(m)


async def test_a_birthday_preview_counts_the_runs_audience(manual: Ops) -> None:
    for scope in (41, 42, 43):
        plan = daily_plan()
        plan.time.execution = f"0 0 9 * * * * {scope}"
        plan.audience.CopyFrom(levels(*TOP))
        preview = await manual.client.plans.preview_plan(
            pb.PreviewPlanRequest(shop_id=manual.shop, plan=plan, fire_time_count=3)
        )
        days = [date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)]
        expected = [len(manual.members(_top_born_in(scope, d))) for d in days]
        everyone = len(manual.members(lambda m: m.level in TOP))
        assert [e.fire_time.ToDatetime(UTC) for e in preview.run_estimates] == [at(d) for d in days]
        assert [e.count for e in preview.run_estimates] == expected
        assert preview.audience_estimate.count == expected[0] < everyone
        (check,) = preview.inventory_checks
        assert check.required == expected[0]  # one coupon each
        # The run reaches exactly the members the preview counted.
        published = await manual.publish(plan)
        await _tick(manual, at(days[0], 9, 0, 10))
        (run,) = await manual.runs(published)
        assert run.progress.targeted == expected[0]
        await manual.step("End", published)
        manual.set_clock(at(date(2026, 11, 24), 10))


# 5. A member skipped for the budget keeps his frequency slot.


async def test_a_member_skipped_for_the_budget_can_get_it_once_the_budget_is_raised(
    manual: Ops,
) -> None:
    plan = daily_plan()
    plan.limits.frequency.max_times = 1
    plan.limits.frequency.window = pb.FREQUENCY_WINDOW_PLAN  # once per member, ever
    plan.limits.total_budget = 40
    plan = await manual.publish(plan)
    audience = await _audience(manual.platform, plan)
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    (first,) = await manual.runs(plan)
    assert first.progress.granted == 40
    assert first.progress.skipped["BUDGET_EXHAUSTED"] == len(audience) - 40
    current = await manual.plan(plan)
    await manual.client.plans.update_plan(
        pb.UpdatePlanRequest(
            shop_id=manual.shop,
            plan=pb.Plan(
                plan_id=plan.plan_id, etag=current.etag, limits=pb.PlanLimits(total_budget=100_000)
            ),
            update_mask=FieldMask(paths=["limits.total_budget"]),
        )
    )
    await _tick(manual, at(date(2026, 11, 26), 9, 0, 10))
    second = next(r for r in await manual.runs(plan) if r.run_id != first.run_id)
    assert second.progress.granted == len(audience) - 40
    assert second.progress.skipped["FREQUENCY_LIMIT"] == 40
    granted = _granted(manual.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}


async def test_a_member_refused_for_stock_gives_back_his_slot_and_budget(manual: Ops) -> None:
    """OUT_OF_STOCK is a refusal for good: the member's frequency slot and
    budget units go back in the transaction that records it, so the next
    day's run (after a restock) grants him."""
    await _stock(manual, 30, create=True)
    plan = gift_plan(TOP)
    plan.time.execution = DAILY_AT_9
    plan.time.term = ""
    plan.limits.frequency.max_times = 1
    plan.limits.frequency.window = pb.FREQUENCY_WINDOW_PLAN
    plan.limits.total_budget = 100_000
    plan = await manual.publish(plan)
    audience = await _audience(manual.platform, plan)
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    stats = await manual.client.plans.get_plan_statistics(
        pb.GetPlanStatisticsRequest(shop_id=manual.shop, plan_id=plan.plan_id)
    )
    assert stats.statistics.benefits_granted == 30
    assert stats.statistics.budget_used == 30  # the refused members' units went back
    await _stock(manual, 10_000)
    await _tick(manual, at(date(2026, 11, 26), 9, 0, 10))
    granted = _granted(manual.platform, plan.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}
    assert Counter(granted.values()) == Counter({1: len(audience)})


async def test_two_runs_racing_for_one_member_give_one_grant(manual: Ops) -> None:
    """Two runs of a once-per-member plan decide the same members at the same
    moment (on PostgreSQL, truly at once): each member is acted on by one of
    them, and both runs together grant each member once."""
    plan = daily_plan()
    plan.limits.frequency.max_times = 1
    plan.limits.frequency.window = pb.FREQUENCY_WINDOW_PLAN
    plan = await manual.publish(plan)
    triggered = [await manual.trigger(plan, key) for key in ("a", "b")]
    members = sorted(await _audience(manual.platform, plan))
    # White box: the two runs' first batches, decided at the same instant.
    assert manual.platform.runs is not None
    store = manual.platform.runs._store
    runs = [await store.get(manual.shop, plan.plan_id, r.run_id) for r in triggered]
    limits = Limits(window="plan", max_times=1, units=1, budget=0)
    decided = await asyncio.gather(*(store.decide(r, members, limits) for r in runs if r))
    acting = Counter(m for d in decided for m, outcome in d.items() if outcome == "act")
    assert acting == Counter(dict.fromkeys(members, 1))
    await manual.worker().drain()
    finished = [await manual.run(plan, r.run_id) for r in triggered]
    assert sum(r.progress.granted for r in finished) == len(members)
    granted = _granted(manual.platform, plan.plan_id)
    assert set(granted) == set(members) and set(granted.values()) == {1}
