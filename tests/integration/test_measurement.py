"""What a plan achieved, through gRPC (issue 21): a control group held out by
a stable hash, members' orders reported as events (idempotent, refused one
by one), the effect with its interval, and a member erased.

The planted effect is the yardstick: orders generated with a fixed seed,
treatment converting 12% and holdout 10%, must give an interval that holds
the 2 points and not 0.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from domain.audience import Rule
from domain.downstream_ports import AudienceSize, RuleCheck
from domain.plan import Plan
from server.app import Platform
from server.persistence.database import normalize_url
from server.persistence.member_data import MemberData
from server.persistence.member_events import MemberEventStore
from server.persistence.unit_of_work import SqlUnitOfWork
from server.stand_ins.population import LEVELS
from server.usecases.member_data import MemberDataUseCases, Retention
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_outcomes import exported
from tests.integration.test_plan_time import _tick
from tests.integration.test_run_rules import Ops, at, levels, manual
from tests.integration.test_runs import NOW, _granted, immediate_plan

__all__ = ["manual"]  # the fixture, imported for pytest

HELD_OUT = pb.MEMBER_OUTCOME_KIND_HELD_OUT
ACCEPTED, DUPLICATE = spb.MEMBER_EVENT_RESULT_ACCEPTED, spb.MEMBER_EVENT_RESULT_DUPLICATE
REFUSED = spb.MEMBER_EVENT_RESULT_REFUSED
FIRE = at(date(2026, 11, 25), 9)


def measured_plan(holdout: float, *audience: str) -> pb.Plan:
    """An immediate plan doubling points (an effect the member view shows)."""
    plan = immediate_plan()
    plan.product_id = "member_day"
    plan.audience.CopyFrom(levels(*audience))
    grant = plan.actions[0].grant_benefit.benefits[0]
    grant.template_id, grant.kind = "points-x2", benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER
    plan.measurement.holdout_percent = holdout
    return plan


def paid(member: str, order: str, amount: int, when: datetime, event: str = "") -> spb.MemberEvent:
    e = spb.MemberEvent(
        event_id=event or f"paid-{order}",
        member_id=member,
        type=spb.MEMBER_EVENT_TYPE_ORDER_PAID,
        order=spb.PaidOrder(
            order_id=order, store_id="s1", amount_minor=amount, currency_code="CNY"
        ),
    )
    e.occur_time.FromDatetime(when)
    return e


def refunded(member: str, order: str, amount: int, when: datetime, event: str) -> spb.MemberEvent:
    e = spb.MemberEvent(
        event_id=event,
        member_id=member,
        type=spb.MEMBER_EVENT_TYPE_ORDER_REFUNDED,
        refund=spb.OrderRefund(order_id=order, amount_minor=amount),
    )
    e.occur_time.FromDatetime(when)
    return e


async def record(ops: Ops, *events: spb.MemberEvent) -> list[spb.MemberEventOutcome]:
    reply = await ops.client.scenario.record_member_events(
        spb.RecordMemberEventsRequest(shop_id=ops.shop, events=events)
    )
    return list(reply.results)


async def effect(ops: Ops, plan: pb.Plan) -> pb.PlanEffect:
    reply = await ops.client.plans.get_plan_effect(
        pb.GetPlanEffectRequest(shop_id=ops.shop, plan_id=plan.plan_id)
    )
    found: pb.PlanEffect = reply.effect
    return found


async def held_out(ops: Ops, plan: pb.Plan, run_id: str) -> set[str]:
    rows, _ = await exported(ops, plan_id=plan.plan_id, run_id=run_id, outcomes=[HELD_OUT])
    return {o.member_id for o in rows}


async def test_events_count_once_refunds_lower_sales_and_bad_events_go_alone(manual: Ops) -> None:
    manual.set_clock(FIRE)
    plan = await manual.publish(measured_plan(50.0, "V4", "V5"))
    await _tick(manual, FIRE)
    (run,) = await manual.runs(plan)
    held = await held_out(manual, plan, run.run_id)
    treated = set(_granted(manual.platform, plan.plan_id))
    assert held and treated and not held & treated
    t, h = sorted(treated)[0], sorted(held)[0]
    day = FIRE + timedelta(days=1)
    manual.set_clock(FIRE + timedelta(days=40))  # every order below lies in the past
    batch = [paid(t, "o-1", 10_000, day), paid(h, "o-2", 6_000, day)]
    assert [r.result for r in await record(manual, *batch)] == [ACCEPTED, ACCEPTED]
    # Replayed, the batch changes nothing.
    assert [r.result for r in await record(manual, *batch)] == [DUPLICATE, DUPLICATE]
    found = await effect(manual, plan)
    assert (found.treatment.converted_members, found.treatment.orders) == (1, 1)
    assert [(s.currency_code, s.net_amount_minor) for s in found.treatment.sales] == [
        ("CNY", 10_000)
    ]
    assert found.holdout.converted_members == 1
    assert found.treatment.members + found.holdout.members == run.progress.targeted
    assert found.holdout.members == len(held) and found.treatment.members == len(treated)
    # A partial refund lowers net sales by its amount; too much is refused
    # on its own, while the rest of its batch goes in.
    results = await record(
        manual,
        refunded(t, "o-1", 2_500, day, "refund-1"),
        refunded(t, "o-1", 9_000, day, "refund-2"),  # more than the 7,500 left
        paid(t, "o-3", 1_000, day + timedelta(days=30)),  # after the 7-day window
        refunded(t, "no-such-order", 100, day, "refund-3"),
        spb.MemberEvent(event_id="bad", member_id=t),  # no type, no time
    )
    assert [(r.result, r.reason) for r in results] == [
        (ACCEPTED, ""),
        (REFUSED, "REFUND_EXCEEDS_ORDER"),
        (ACCEPTED, ""),
        (REFUSED, "ORDER_NOT_FOUND"),
        (REFUSED, "INVALID_EVENT"),
    ]
    assert "type" in results[4].message and "occur_time" in results[4].message
    found = await effect(manual, plan)
    assert [s.net_amount_minor for s in found.treatment.sales] == [7_500]
    assert found.treatment.orders == 1  # the order outside the window does not count
    # A whole batch that is not one: INVALID_ARGUMENT, nothing taken.
    with pytest.raises(CustopsError) as err:
        await record(manual)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and "events" in str(err.value)


async def test_erasing_a_member_leaves_no_row_of_him(manual: Ops, database_url: str) -> None:
    manual.set_clock(FIRE)
    plan = await manual.publish(measured_plan(0.0, "V4", "V5"))
    await _tick(manual, FIRE)
    member = sorted(_granted(manual.platform, plan.plan_id))[0]
    manual.set_clock(FIRE + timedelta(hours=2))
    await record(manual, paid(member, "o-9", 500, FIRE + timedelta(hours=1)))
    assert await _rows_of(database_url, manual.shop, member) != {}
    request = spb.EraseMemberRequest(shop_id=manual.shop, member_id=member, request_id="erase-1")
    first = await manual.client.scenario.erase_member(request)
    assert first.erased["outcomes"] == 1 and first.erased["orders"] == 1
    assert first.erased["events"] == 1 and first.erased["benefits"] >= 1
    assert await _rows_of(database_url, manual.shop, member) == {}
    # Idempotent: the retry answers the first answer; a new request finds nothing.
    assert await manual.client.scenario.erase_member(request) == first
    again = await manual.client.scenario.erase_member(
        spb.EraseMemberRequest(shop_id=manual.shop, member_id=member)
    )
    assert set(again.erased.values()) == {0}
    # Aggregates stay: the run still counts the member it targeted.
    (run,) = await manual.runs(plan)
    assert run.progress.targeted > 0 and run.progress.granted > 0


async def _rows_of(database_url: str, shop: str, member: str) -> dict[str, int]:
    """Rows naming the member in every table that holds members' data."""
    tables = {
        "run_members": "member_id = :m AND run_id IN (SELECT run_id FROM plan_runs "
        "WHERE shop_id = :s)",
        "member_events": "shop_id = :s AND member_id = :m",
        "trigger_waits": "shop_id = :s AND member_id = :m",
        "orders": "shop_id = :s AND member_id = :m",
        "member_benefits": "shop_id = :s AND member_id = :m",
        "operation_records": "shop_id = :s AND member_id = :m",
        "frequency_claims": "member_id = :m AND plan_id IN (SELECT plan_id FROM plans "
        "WHERE shop_id = :s)",
        "contact_claims": "shop_id = :s AND member_id = :m",
        "item_failures": "item_key = :m AND job_id IN (SELECT job_id FROM plan_runs "
        "WHERE shop_id = :s)",
    }
    engine = create_async_engine(normalize_url(database_url))
    found: dict[str, int] = {}
    try:
        async with engine.connect() as conn:
            for table, where in tables.items():
                count = await conn.scalar(
                    text(f"SELECT count(*) FROM {table} WHERE {where}"), {"s": shop, "m": member}
                )
                if count:
                    found[table] = int(count)
    finally:
        await engine.dispose()
    return found


@pytest.fixture
async def hundred_thousand(postgres_url: str) -> AsyncIterator[Ops]:
    """A shop of 100,000 members on PostgreSQL, the test driving the engine."""
    platform = Platform(
        settings(postgres_url, stubs_population=100_000, engine_concurrency=0),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=60) as client:
        # The runs are bound by the CPU here, not by the default rates.
        for downstream in (pb.DOWNSTREAM_AUDIENCE, pb.DOWNSTREAM_BENEFIT):
            await client.plans.update_throttle_setting(
                pb.UpdateThrottleSettingRequest(
                    setting=pb.ThrottleSetting(
                        downstream=downstream, rate_per_second=1e6, burst=1_000_000
                    )
                )
            )
        yield Ops(platform, client)
    await platform.stop(grace=1)


@pytest.mark.postgres
async def test_a_holdout_is_its_share_stable_and_measures_a_planted_effect(
    hundred_thousand: Ops,
) -> None:
    ops = hundred_thousand
    ops.set_clock(FIRE)
    plan = await ops.publish(measured_plan(20.0, *LEVELS))
    await _tick(ops, FIRE)
    (first,) = await ops.runs(plan)
    assert first.progress.targeted == 100_000
    held = await held_out(ops, plan, first.run_id)
    assert abs(len(held) / 100_000 - 0.20) <= 0.01
    # Held-out members were given nothing; the rest were.
    granted = set(_granted(ops.platform, plan.plan_id))
    assert not granted & held and len(granted) == 100_000 - len(held)
    # The same group in the next run, and nothing of the plan on their pages.
    second = await ops.trigger(plan, "second")
    await ops.worker().drain()
    assert await held_out(ops, plan, second.run_id) == held
    for member, shown in ((sorted(held)[0], False), (sorted(granted)[0], True)):
        view = await ops.client.scenario.get_member_view(
            spb.GetMemberViewRequest(
                shop_id=ops.shop, member_id=member, front_office=pb.FRONT_OFFICE_MICRO_MALL
            )
        )
        assert (plan.plan_id in {p.plan_id for p in view.plans}) is shown, member

    # Orders planted with a fixed seed: treatment converts 12%, holdout 10%.
    ops.set_clock(FIRE + timedelta(days=7))
    rng = random.Random(21)
    events: list[spb.MemberEvent] = []
    for i in range(100_000):
        member = f"m{i:08d}"
        if rng.random() < (0.10 if member in held else 0.12):
            when = FIRE + timedelta(hours=rng.randint(1, 6 * 24))
            events.append(paid(member, f"o{i}", rng.randint(1_000, 50_000), when))
    for start in range(0, len(events), 500):
        results = await record(ops, *events[start : start + 500])
        assert {r.result for r in results} == {ACCEPTED}
    found = await effect(ops, plan)
    assert found.treatment.members + found.holdout.members == 100_000
    rate = found.conversion
    assert rate.absolute_low < 0.02 < rate.absolute_high, rate
    assert rate.absolute_low > 0, rate
    assert rate.relative_low < 0.2 < rate.relative_high
    (sales,) = found.sales
    assert sales.currency_code == "CNY" and sales.per_member_minor.absolute_low > 0
    days = {d.day for d in found.daily}
    assert min(days) >= "2026-11-25" and len(days) <= 7


class _NobodyAsked:
    """The audience system and plans of use cases that only purge: never asked."""

    async def live(self, shop_id: str) -> list[Plan]:
        raise AssertionError("a purge asks for no plans")

    async def estimate(
        self, shop_id: str, rule: Rule, as_of: datetime, time_zone: str
    ) -> AudienceSize:
        raise AssertionError("a purge asks the audience system nothing")

    async def known(self, shop_id: str, member_ids: Sequence[str]) -> set[str]:
        raise AssertionError("a purge asks the audience system nothing")

    async def match_rules(
        self,
        shop_id: str,
        member_ids: Sequence[str],
        checks: Sequence[RuleCheck],
        as_of: datetime,
    ) -> dict[str, set[str]]:
        raise AssertionError("a purge asks the audience system nothing")


async def test_rows_older_than_their_retention_are_purged(manual: Ops, database_url: str) -> None:
    manual.set_clock(FIRE)
    plan = await manual.publish(measured_plan(0.0, "V4", "V5"))
    await _tick(manual, FIRE)
    member = sorted(_granted(manual.platform, plan.plan_id))[0]
    manual.set_clock(FIRE + timedelta(days=3))
    await record(manual, paid(member, "o-old", 500, FIRE + timedelta(hours=1)))
    await record(manual, paid(member, "o-new", 700, FIRE + timedelta(days=2)))
    engine = create_async_engine(normalize_url(database_url))
    try:

        def cases(kept: Retention) -> MemberDataUseCases:
            return MemberDataUseCases(
                MemberEventStore(engine),
                _NobodyAsked(),
                _NobodyAsked(),
                MemberData(engine),
                lambda: SqlUnitOfWork(engine, manual.clock),
                manual.clock,
                kept,
            )

        purging = cases(Retention(timedelta(days=30), timedelta(days=1), timedelta(days=1)))
        # Outcomes are a month young: kept; the first order and its event are
        # older than a day: purged; the second stays. (The purge is the whole
        # database's: other tests' rows may go too, so only this shop's are
        # looked at.)
        purged = await purging.purge()
        assert purged["events"] >= 1 and purged["orders"] >= 1
        assert await _rows_of(database_url, manual.shop, member) == {
            "run_members": 1,
            "member_events": 1,
            "orders": 1,
            "member_benefits": 1,
            "operation_records": 1,
        }
        manual.set_clock(FIRE + timedelta(days=40))
        await purging.purge()
        assert await _rows_of(database_url, manual.shop, member) == {
            "member_benefits": 1,
            "operation_records": 1,
        }
        # Kept for ever at 0.
        forever = cases(Retention(timedelta(0), timedelta(0), timedelta(0)))
        assert await forever.purge() == {"outcomes": 0, "events": 0, "waits": 0, "orders": 0}
    finally:
        await engine.dispose()
