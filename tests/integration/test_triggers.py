"""Event-triggered plans through gRPC (issue 26): the abandoned-cart template
with a delay in seconds — it acts after the delay, an order paid within it
cancels the wait, a replayed event acts once, quiet hours defer the
message, the audience is asked when the wait is over, and a stranger's
event is refused alone. The test moves the clock and sweeps and runs the
engine by hand (the `manual` server has no loops of its own)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.client import CustopsError
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.stand_ins.notify import sms_reachable
from server.usecases import trigger_sweep
from tests.integration.test_measurement import ACCEPTED, DUPLICATE, REFUSED, paid, record
from tests.integration.test_outcomes import exported
from tests.integration.test_run_rules import TOP, Ops, at, levels, manual
from tests.integration.test_runs import _granted

__all__ = ["manual"]

START = at(date(2026, 11, 24), 10)  # 10:00 in Shanghai
DELAY = timedelta(seconds=60)


async def cart_plan(
    ops: Ops, execution: str = "@on carted after 60s unless order_paid", **limits: pb.QuietHours
) -> pb.Plan:
    """The abandoned-cart template with its delay in seconds, for the top
    levels, published."""
    overrides = pb.Plan(time=pb.PlanTime(execution=execution), audience=levels(*TOP))
    paths = ["time.execution", "audience"]
    if "quiet_hours" in limits:
        overrides.limits.quiet_hours.CopyFrom(limits["quiet_hours"])
        paths.append("limits")
    draft = (
        await ops.client.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id=ops.shop,
                template_id="abandoned_cart",
                overrides=overrides,
                override_mask=FieldMask(paths=paths),
            )
        )
    ).plan
    published: pb.Plan = (
        await ops.client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=ops.shop, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    assert published.state == pb.PLAN_STATE_ACTIVE
    assert not published.HasField("next_fire_time")  # events fire it, not the calendar
    return published


def carted(member: str, when: datetime, event: str = "") -> spb.MemberEvent:
    e = spb.MemberEvent(
        event_id=event or f"cart-{member}-{when.timestamp():.0f}",
        member_id=member,
        type=spb.MEMBER_EVENT_TYPE_CARTED,
        item_id="sku-1",
    )
    e.occur_time.FromDatetime(when)
    return e


def top_members(ops: Ops, count: int) -> list[str]:
    """Members the plan's audience takes and its text messages reach (the
    stand-in refuses SMS to one member in twenty, for good)."""
    chosen = ops.members(lambda m: m.level in TOP and sms_reachable(ops.shop, m.member_id))
    return sorted(chosen)[:count]


async def due(ops: Ops, at_: datetime) -> int:
    """Move the clock, sweep the due waits into runs, run them; how many
    waits the sweep settled."""
    ops.set_clock(at_)
    assert ops.platform.runs is not None
    settled = await ops.platform.runs.sweep()
    await ops.worker().drain()
    return settled


def coupons(ops: Ops, plan: pb.Plan) -> Counter[str]:
    return _granted(ops.platform, plan.plan_id)


async def test_a_cart_left_unpaid_acts_after_the_delay_and_a_paid_order_cancels_it(
    manual: Ops,
) -> None:
    manual.set_clock(START)
    plan = await cart_plan(manual)
    left, paying = top_members(manual, 2)
    cart = carted(left, START)
    results = await record(manual, cart, carted(paying, START))
    assert [r.result for r in results] == [ACCEPTED, ACCEPTED]
    # Before the delay is over nothing happens.
    assert await due(manual, START + DELAY / 2) == 0
    assert coupons(manual, plan) == Counter()
    # One of them pays within the delay: his wait is over, the other's goes on.
    manual.set_clock(START + DELAY / 2)
    order = paid(paying, f"o-{paying}", 10_000, START + timedelta(seconds=40))
    assert [r.result for r in await record(manual, order)] == [ACCEPTED]
    # After the delay: one run, for the member who left his cart.
    assert await due(manual, START + DELAY + timedelta(seconds=1)) == 1
    assert coupons(manual, plan) == Counter({left: 1})
    assert manual.sent(plan) == Counter({left: 1})
    (run,) = await manual.runs(plan)
    assert run.trigger == pb.RUN_TRIGGER_EVENT and run.state == pb.RUN_STATE_SUCCEEDED, run
    assert run.progress.granted == 1
    # The member's outcome names the event his wait was for, in the run's
    # export and in his own outcomes across the shop.
    outcomes, _ = await exported(manual, plan_id=plan.plan_id, run_id=run.run_id)
    assert [(o.member_id, o.outcome, o.event_id) for o in outcomes] == [
        (left, pb.MEMBER_OUTCOME_KIND_GRANTED, cart.event_id)
    ]
    mine = await manual.client.plans.list_member_outcomes(
        pb.ListMemberOutcomesRequest(shop_id=manual.shop, member_id=left)
    ).first_page()
    assert [o.event_id for o in mine.outcomes] == [cart.event_id]
    # The plan's statistics count the run as any run.
    stats = (
        await manual.client.plans.get_plan_statistics(
            pb.GetPlanStatisticsRequest(shop_id=manual.shop, plan_id=plan.plan_id)
        )
    ).statistics
    assert (stats.runs, stats.benefits_granted, stats.messages_sent) == (1, 1, 1)
    # Nothing more is due: sweeping again makes no run and grants nothing.
    assert await due(manual, START + DELAY * 3) == 0
    assert coupons(manual, plan) == Counter({left: 1})
    assert len(await manual.runs(plan)) == 1


async def test_an_order_told_before_its_cart_still_cancels_the_wait(manual: Ops) -> None:
    """Events come out of order: the payment (after the cart, within the
    delay) is told first; the cart's wait is born cancelled."""
    manual.set_clock(START + DELAY / 2)
    plan = await cart_plan(manual)
    (member,) = top_members(manual, 1)
    later = paid(member, f"o-{member}", 5_000, START + timedelta(seconds=20))
    assert [r.result for r in await record(manual, later, carted(member, START))] == [
        ACCEPTED,
        ACCEPTED,
    ]
    assert await due(manual, START + DELAY * 2) == 0
    assert coupons(manual, plan) == Counter() and await manual.runs(plan) == []


async def test_a_replayed_event_acts_once(manual: Ops) -> None:
    manual.set_clock(START)
    plan = await cart_plan(manual)
    (member,) = top_members(manual, 1)
    cart = carted(member, START, event="cart-once")
    assert [r.result for r in await record(manual, cart)] == [ACCEPTED]
    assert [r.result for r in await record(manual, cart)] == [DUPLICATE]
    assert await due(manual, START + DELAY + timedelta(seconds=1)) == 1
    # Told again after it acted: still the same event, nothing more.
    assert [r.result for r in await record(manual, cart)] == [DUPLICATE]
    assert await due(manual, START + DELAY * 3) == 0
    assert coupons(manual, plan) == Counter({member: 1})
    # Another cart of the same member is another trigger: it acts again.
    manual.set_clock(START + DELAY * 3)
    again = carted(member, START + DELAY * 3)
    assert [r.result for r in await record(manual, again)] == [ACCEPTED]
    assert await due(manual, START + DELAY * 4 + timedelta(seconds=1)) == 1
    assert coupons(manual, plan) == Counter({member: 2})


async def test_quiet_hours_defer_the_message_until_they_end(manual: Ops) -> None:
    late = at(date(2026, 11, 24), 22, 30)  # in quiet hours, Shanghai
    manual.set_clock(late)
    quiet = pb.QuietHours(start="22:00", end="08:00", policy=pb.QUIET_HOURS_POLICY_DEFER)
    plan = await cart_plan(manual, quiet_hours=quiet)
    members = top_members(manual, 5)
    assert {r.result for r in await record(manual, *(carted(m, late) for m in members))} == {
        ACCEPTED
    }
    assert await due(manual, late + DELAY + timedelta(seconds=1)) == len(members)
    # The coupons go out at once, the reminders wait for the morning.
    assert set(coupons(manual, plan)) == set(members)
    assert manual.sent(plan) == Counter()
    manual.set_clock(at(date(2026, 11, 25), 8))
    await manual.worker().retry_due()
    await manual.worker().drain()
    sent = manual.sent(plan)
    assert sent == Counter(dict.fromkeys(members, 1))
    assert set(coupons(manual, plan).values()) == {1}


async def test_the_audience_is_asked_when_the_wait_is_over(manual: Ops) -> None:
    """A member outside the plan's audience is skipped with that reason
    when his wait is over; the event itself was taken."""
    manual.set_clock(START)
    plan = await cart_plan(manual)
    inside = top_members(manual, 1)[0]
    outside = sorted(manual.members(lambda m: m.level not in TOP))[0]
    assert [
        r.result for r in await record(manual, carted(inside, START), carted(outside, START))
    ] == [
        ACCEPTED,
        ACCEPTED,
    ]
    assert await due(manual, START + DELAY + timedelta(seconds=1)) == 2
    assert set(coupons(manual, plan)) == {inside}
    (run,) = await manual.runs(plan)
    assert run.progress.granted == 1
    assert dict(run.progress.skipped) == {"NOT_IN_AUDIENCE": 1}


async def test_a_strangers_event_is_refused_alone(manual: Ops) -> None:
    manual.set_clock(START)
    plan = await cart_plan(manual)
    (member,) = top_members(manual, 1)
    results = await record(manual, carted("nobody-here", START), carted(member, START))
    assert [(r.result, r.reason) for r in results] == [
        (REFUSED, "UNKNOWN_MEMBER"),
        (ACCEPTED, ""),
    ]
    assert await due(manual, START + DELAY + timedelta(seconds=1)) == 1
    assert coupons(manual, plan) == Counter({member: 1})


async def test_a_plan_fired_by_events_has_no_run_by_hand(manual: Ops) -> None:
    manual.set_clock(START)
    plan = await cart_plan(manual)
    with pytest.raises(CustopsError) as err:
        await manual.trigger(plan, "by-hand")
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "events" in str(err.value)


async def test_many_due_at_once_go_in_runs_of_a_batch_each(
    manual: Ops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More members due for a plan than one run takes (a batch of the
    engine's; 2 here): several runs, each member in one, each acted on once."""
    monkeypatch.setattr(trigger_sweep, "RUN_MEMBERS", 2)
    manual.set_clock(START)
    plan = await cart_plan(manual)
    members = top_members(manual, 5)
    assert {r.result for r in await record(manual, *(carted(m, START) for m in members))} == {
        ACCEPTED
    }
    assert await due(manual, START + DELAY + timedelta(seconds=1)) == 5
    assert coupons(manual, plan) == Counter(dict.fromkeys(members, 1))
    made = await manual.runs(plan)
    assert sorted(r.progress.granted for r in made) == [1, 2, 2]
    assert {r.state for r in made} == {pb.RUN_STATE_SUCCEEDED}
