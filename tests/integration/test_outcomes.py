"""Every member's outcome, read through gRPC (issue 21): each member a run
considered is listed once with what became of him and why — skipped for
each reason, deferred with its time, failed with the downstream's reason —
filtered and paged; the export of a run equals its listing row for row;
the plan's statistics count them by outcome, reason and day.

The witnesses are the stand-ins' books (who was granted, who was texted)
and the runs' own counters; the listing must agree with both.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date
from typing import Any

import grpc
import pytest

from custops.audience.v1 import audience_pb2
from custops.client import CustopsError
from custops.notify.v1 import notify_pb2
from custops.plan.v1 import plan_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from tests.integration.test_plan_time import _tick
from tests.integration.test_precise_lists import KNOWN, UNKNOWN
from tests.integration.test_run_rules import TOP, Ops, at, levels, manual, messaging_plan
from tests.integration.test_runs import _audience, _granted, immediate_plan
from tests.integration.test_shop_policy import _policy, _sent_on

__all__ = ["manual"]  # the fixture, imported for pytest

SMS = notify_pb2.MESSAGE_CHANNEL_SMS
PUSH = notify_pb2.MESSAGE_CHANNEL_APP_PUSH
SKIPPED, FAILED = pb.MEMBER_OUTCOME_KIND_SKIPPED, pb.MEMBER_OUTCOME_KIND_FAILED
GRANTED, SENT = pb.MEMBER_OUTCOME_KIND_GRANTED, pb.MEMBER_OUTCOME_KIND_SENT


async def listed(ops: Ops, page_size: int = 7, **where: Any) -> list[pb.MemberOutcome]:
    """Every outcome ListMemberOutcomes gives, page by page (small pages, so
    that paging is exercised)."""
    found: list[pb.MemberOutcome] = []
    token = ""
    for _ in range(10_000):  # bounded
        page = await ops.client.plans.list_member_outcomes(
            pb.ListMemberOutcomesRequest(
                shop_id=ops.shop, page_size=page_size, page_token=token, **where
            )
        ).first_page()
        found += page.outcomes
        token = page.next_page_token
        if not token:
            return found
    raise AssertionError("the pages never ended")


async def exported(ops: Ops, **where: Any) -> tuple[list[pb.MemberOutcome], set[int]]:
    """The export's outcomes, and the totals its messages announced."""
    found: list[pb.MemberOutcome] = []
    totals: set[int] = set()
    async for chunk in ops.client.plans.export_member_outcomes(
        pb.ExportMemberOutcomesRequest(shop_id=ops.shop, **where)
    ):
        found += chunk.outcomes
        totals.add(chunk.total_count)
    return found, totals


def reasons(outcomes: list[pb.MemberOutcome], kind: int = SKIPPED) -> dict[str, set[str]]:
    by: dict[str, set[str]] = {}
    for o in outcomes:
        if o.outcome == kind:
            by.setdefault(o.reason, set()).add(o.member_id)
    return by


async def one_run(ops: Ops, plan: pb.Plan) -> tuple[pb.PlanRun, list[pb.MemberOutcome]]:
    """The plan's one run, and its outcomes, each member listed once."""
    (run,) = await ops.runs(plan)
    outcomes = await listed(ops, plan_id=plan.plan_id, run_id=run.run_id)
    members = [o.member_id for o in outcomes]
    assert len(members) == len(set(members)), "a member listed twice"
    assert {o.run_id for o in outcomes} == {run.run_id}
    # Each skip the run counted is a member listed with that reason.
    counted = Counter(o.reason for o in outcomes if o.outcome == SKIPPED)
    assert counted == Counter(dict(run.progress.skipped))
    failed = Counter(o.reason for o in outcomes if o.outcome == FAILED)
    assert failed == Counter(dict(run.progress.failed_by_reason))
    return run, outcomes


def _texts_only(*channels: int) -> pb.Plan:
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    del plan.actions[:]
    for channel in channels:
        plan.actions.add(
            send_message=pb.SendMessageAction(channel=channel, template_id="payday-hello")  # type: ignore[arg-type]
        )
    return plan


async def test_each_skip_reason_is_listed_with_that_reason(manual: Ops) -> None:
    ops = manual
    # Quiet hours, in them: a plan that only messages, dropping; one that
    # grants and messages, deferring until they end.
    night = at(date(2026, 11, 24), 23)
    ops.set_clock(night)
    dropping = messaging_plan(pb.QUIET_HOURS_POLICY_DROP)
    del dropping.actions[0]
    dropping = await ops.publish(dropping)
    deferring = await ops.publish(messaging_plan(pb.QUIET_HOURS_POLICY_DEFER))
    await _tick(ops, night)
    audience = await _audience(ops.platform, dropping)
    _, outcomes = await one_run(ops, dropping)
    assert reasons(outcomes) == {"QUIET_HOURS": audience}
    _, outcomes = await one_run(ops, deferring)
    assert {o.member_id for o in outcomes} == audience
    assert {o.outcome for o in outcomes} == {pb.MEMBER_OUTCOME_KIND_DEFERRED}
    eight = at(date(2026, 11, 25), 8)
    assert {o.defer_until.ToDatetime(UTC) for o in outcomes} == {eight}
    assert {o.reason for o in outcomes} == {"QUIET_HOURS"}

    # The next morning: the budget, a precise list with strangers, consent.
    morning = at(date(2026, 11, 25), 9)
    ops.set_clock(morning)
    budgeted = immediate_plan()
    budgeted.audience.CopyFrom(levels(*TOP))
    budgeted.limits.total_budget = 5
    budgeted = await ops.publish(budgeted)
    strangers = immediate_plan()
    strangers.product_id = "precise_audience"
    strangers.audience.CopyFrom(
        audience_pb2.AudienceRule(members=audience_pb2.MemberList(member_ids=[*KNOWN, *UNKNOWN]))
    )
    strangers = await ops.publish(strangers)
    consenting = await ops.publish(_texts_only(SMS))
    refuser = sorted(audience)[0]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ops.platform.stubs_port}") as channel:
        await stubadmin_pb2_grpc.StubAdminServiceStub(channel).SetMemberConsent(
            stubadmin_pb2.SetMemberConsentRequest(
                shop_id=ops.shop, member_id=refuser, channel=SMS, opted_out=True
            )
        )
    await _tick(ops, morning)
    _, outcomes = await one_run(ops, budgeted)
    granted = set(_granted(ops.platform, budgeted.plan_id))
    assert len(granted) == 5
    assert {o.member_id for o in outcomes if o.outcome == GRANTED} == granted
    assert reasons(outcomes) == {"BUDGET_EXHAUSTED": audience - granted}
    _, outcomes = await one_run(ops, strangers)
    assert reasons(outcomes) == {"UNKNOWN_MEMBER": set(UNKNOWN)}
    assert {o.member_id for o in outcomes if o.outcome == GRANTED} == set(KNOWN)
    _, outcomes = await one_run(ops, consenting)
    assert reasons(outcomes) == {"OPTED_OUT": {refuser}}
    texted = set(_sent_on(ops, consenting, SMS))
    assert {o.member_id for o in outcomes if o.outcome == SENT} == texted
    unreachable = reasons(outcomes, FAILED)
    assert set(unreachable) <= {"MEMBER_UNREACHABLE"}
    assert texted | {refuser} | unreachable.get("MEMBER_UNREACHABLE", set()) == audience

    # The frequency limit: a second run of a plan that acts once per member.
    once = immediate_plan()
    once.audience.CopyFrom(levels(*TOP))
    once.limits.frequency.CopyFrom(pb.FrequencyLimit(max_times=1, window=pb.FREQUENCY_WINDOW_PLAN))
    once = await ops.publish(once)
    await _tick(ops, morning)
    again = await ops.trigger(once, "again")
    await ops.worker().drain()
    outcomes = await listed(ops, plan_id=once.plan_id, run_id=again.run_id)
    assert reasons(outcomes) == {"FREQUENCY_LIMIT": audience}

    # The shop's contact limit: one push a day, from two plans that push.
    await _policy(ops, pb.ContactLimit(channel=PUSH, max_messages=1, window=pb.CONTACT_WINDOW_DAY))
    first = await ops.publish(_texts_only(PUSH))
    await _tick(ops, morning)
    second = await ops.publish(_texts_only(PUSH))
    await _tick(ops, morning)
    pushed = set(_sent_on(ops, first, PUSH))
    _, outcomes = await one_run(ops, second)
    assert reasons(outcomes) == {"CONTACT_CAP": pushed}

    # Filters: by outcome and reason, by plan across its runs, by member.
    only = await listed(
        ops, plan_id=budgeted.plan_id, outcomes=[SKIPPED], reason="BUDGET_EXHAUSTED"
    )
    assert {o.member_id for o in only} == audience - granted
    assert await listed(ops, plan_id=budgeted.plan_id, outcomes=[FAILED]) == []
    across = await listed(ops, plan_id=once.plan_id)
    assert Counter(o.outcome for o in across) == {GRANTED: len(audience), SKIPPED: len(audience)}
    mine = await listed(ops, member_id=refuser)
    assert {(o.plan_id, o.outcome, o.reason) for o in mine if o.plan_id == consenting.plan_id} == {
        (consenting.plan_id, SKIPPED, "OPTED_OUT")
    }
    assert {o.plan_id for o in mine} >= {dropping.plan_id, budgeted.plan_id, once.plan_id}

    # The statistics count the same, by outcome, reason and day (the plan's zone).
    stats = (
        await ops.client.plans.get_plan_statistics(
            pb.GetPlanStatisticsRequest(shop_id=ops.shop, plan_id=once.plan_id)
        )
    ).statistics
    totals = {(c.outcome, c.reason): c.members for c in stats.outcome_counts}
    assert totals == {(GRANTED, ""): len(audience), (SKIPPED, "FREQUENCY_LIMIT"): len(audience)}
    assert {c.day for c in stats.daily_outcome_counts} == {"2026-11-25"}
    assert sum(c.members for c in stats.daily_outcome_counts) == 2 * len(audience)


async def test_the_export_of_a_run_equals_its_listing(manual: Ops) -> None:
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    plan.limits.total_budget = 40
    manual.set_clock(at(date(2026, 11, 25), 9))
    plan = await manual.publish(plan)
    await _tick(manual, at(date(2026, 11, 25), 9))
    (run,) = await manual.runs(plan)
    shown = await listed(manual, page_size=500, plan_id=plan.plan_id, run_id=run.run_id)
    assert len(shown) == run.progress.targeted > 40
    rows, totals = await exported(manual, plan_id=plan.plan_id, run_id=run.run_id)
    assert rows == shown and totals == {len(shown)}
    # Filtered the same way, the same rows; and the plan's export holds its runs'.
    skipped = await listed(manual, page_size=500, plan_id=plan.plan_id, outcomes=[SKIPPED])
    rows, totals = await exported(manual, plan_id=plan.plan_id, outcomes=[SKIPPED])
    assert rows == skipped and totals == {len(skipped)} and len(skipped) == len(shown) - 40
    # Nothing to export is one message saying so.
    assert await exported(manual, plan_id=plan.plan_id, outcomes=[FAILED]) == ([], {0})


async def test_bad_requests_name_the_field(manual: Ops) -> None:
    plan = await manual.publish(immediate_plan())
    for where, field in (
        ({"plan_id": plan.plan_id, "member_id": "m1"}, "member_id"),
        ({"plan_id": plan.plan_id, "reason": "lower case"}, "reason"),
        ({"plan_id": plan.plan_id, "outcomes": [99]}, "outcomes"),
        ({"plan_id": plan.plan_id, "run_id": "../x"}, "run_id"),
        ({"plan_id": plan.plan_id, "page_token": "not-ours"}, "page_token"),
    ):
        with pytest.raises(CustopsError) as err:
            await manual.client.plans.list_member_outcomes(
                pb.ListMemberOutcomesRequest(shop_id=manual.shop, **where)
            ).first_page()
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT, where
        assert field in str(err.value), where
    with pytest.raises(CustopsError) as err:
        await exported(manual, plan_id="nope")
    assert err.value.code is grpc.StatusCode.NOT_FOUND
