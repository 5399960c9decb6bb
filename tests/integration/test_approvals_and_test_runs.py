"""Large plans need a second pair of eyes, and any plan can be tried on named
test members first (issue 19, item 7). Before, a plan reaching a million
members was published by one person with one call, and nothing could be
tried before it went out."""

from __future__ import annotations

from collections import Counter
from datetime import date

import grpc
import pytest

from custops.audience.v1 import audience_pb2
from custops.audit.v1 import audit_pb2 as apb
from custops.client import AsyncCustopsClient, CustopsError
from custops.notify.v1 import notify_pb2
from custops.plan.v1 import plan_pb2 as pb
from server.stand_ins.notify import sms_reachable
from tests.integration.test_plan_time import _tick
from tests.integration.test_run_rules import TOP, Ops, at, daily_plan, manual
from tests.integration.test_runs import _audience, _granted

__all__ = ["manual"]  # the fixture, imported for pytest


def _as(ops: Ops, actor: str) -> AsyncCustopsClient:
    """A client of the same server whose calls say they are made by `actor`."""
    return AsyncCustopsClient(
        f"127.0.0.1:{ops.platform.port}", timeout=30, metadata=(("x-custops-actor", actor),)
    )


async def _threshold(ops: Ops, members: int) -> None:
    await ops.client.plans.update_shop_policy(
        pb.UpdateShopPolicyRequest(
            policy=pb.ShopPolicy(shop_id=ops.shop, approval_threshold=members)
        )
    )


def _few(ops: Ops) -> pb.Plan:
    """Daily at nine for three listed members: below any sensible threshold."""
    plan = daily_plan()
    members = sorted(ops.members(lambda m: m.level in TOP))[:3]
    plan.audience.CopyFrom(
        audience_pb2.AudienceRule(members=audience_pb2.MemberList(member_ids=members))
    )
    return plan


async def test_a_plan_above_the_threshold_waits_for_another_approver(manual: Ops) -> None:
    await _threshold(manual, 100)  # the top levels are about 330 members
    async with _as(manual, "alice") as alice, _as(manual, "bob") as bob:
        big = (
            await alice.plans.create_plan(
                pb.CreatePlanRequest(shop_id=manual.shop, plan=daily_plan())
            )
        ).plan
        asked = (
            await alice.plans.publish_plan(
                pb.PublishPlanRequest(shop_id=manual.shop, plan_id=big.plan_id)
            )
        ).plan
        assert asked.state == pb.PLAN_STATE_AWAITING_APPROVAL
        audience = await _audience(manual.platform, asked)
        assert asked.approval.requested_by == "alice"
        assert asked.approval.audience_estimate == len(audience) > 100
        assert asked.approval.threshold == 100
        # Below the threshold, publishing is publishing.
        small = (
            await alice.plans.create_plan(
                pb.CreatePlanRequest(shop_id=manual.shop, plan=_few(manual))
            )
        ).plan
        published = (
            await alice.plans.publish_plan(
                pb.PublishPlanRequest(shop_id=manual.shop, plan_id=small.plan_id)
            )
        ).plan
        assert published.state == pb.PLAN_STATE_ACTIVE and not published.HasField("approval")
        # Awaiting approval, it does not run.
        await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
        assert await manual.runs(asked) == []
        assert len(await manual.runs(published)) == 1
        # Its author cannot approve it; another approver can.
        with pytest.raises(CustopsError) as err:
            await alice.plans.approve_plan(
                pb.ApprovePlanRequest(shop_id=manual.shop, plan_id=big.plan_id)
            )
        assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.reason == "SELF_APPROVAL"
        approved = (
            await bob.plans.approve_plan(
                pb.ApprovePlanRequest(shop_id=manual.shop, plan_id=big.plan_id)
            )
        ).plan
    assert approved.state == pb.PLAN_STATE_ACTIVE
    assert approved.approval.approved and approved.approval.decided_by == "bob"
    await _tick(manual, at(date(2026, 11, 26), 9, 0, 10))
    (run,) = await manual.runs(approved)
    assert run.progress.granted == len(audience)
    # Both the request and the approval are in the audit log.
    entries = (
        await manual.client.audit.list_audit_entries(
            apb.ListAuditEntriesRequest(shop_id=manual.shop, resource=f"plans/{big.plan_id}")
        ).first_page()
    ).entries
    calls = [(e.caller, e.rpc.rsplit("/", 1)[1]) for e in reversed(entries) if e.outcome == "OK"]
    assert ("alice", "PublishPlan") in calls and ("bob", "ApprovePlan") in calls
    assert ("alice", "ApprovePlan") not in calls


async def test_a_rejected_plan_is_a_draft_again_with_the_reason(manual: Ops) -> None:
    await _threshold(manual, 100)
    async with _as(manual, "alice") as alice, _as(manual, "bob") as bob:
        draft = (
            await alice.plans.create_plan(
                pb.CreatePlanRequest(shop_id=manual.shop, plan=daily_plan())
            )
        ).plan
        await alice.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=manual.shop, plan_id=draft.plan_id)
        )
        rejected = (
            await bob.plans.reject_plan(
                pb.RejectPlanRequest(
                    shop_id=manual.shop, plan_id=draft.plan_id, reason="narrow it to V5"
                )
            )
        ).plan
        assert rejected.state == pb.PLAN_STATE_DRAFT
        assert rejected.approval.reject_reason == "narrow it to V5"
        assert not rejected.approval.approved and rejected.approval.decided_by == "bob"
        with pytest.raises(CustopsError) as err:  # nothing is awaiting approval now
            await bob.plans.approve_plan(
                pb.ApprovePlanRequest(shop_id=manual.shop, plan_id=draft.plan_id)
            )
        assert err.value.reason == "NOT_AWAITING_APPROVAL"


async def test_a_test_run_is_real_marked_and_counted_apart(manual: Ops) -> None:
    plan = daily_plan()
    plan.actions.add(
        send_message=pb.SendMessageAction(
            channel=notify_pb2.MESSAGE_CHANNEL_SMS, template_id="hello"
        )
    )
    plan.limits.frequency.max_times = 1
    plan.limits.frequency.window = pb.FREQUENCY_WINDOW_PLAN
    plan.limits.total_budget = 1000
    draft = (
        await manual.client.plans.create_plan(pb.CreatePlanRequest(shop_id=manual.shop, plan=plan))
    ).plan
    # Two whom the plan's SMS reaches (the stand-in has no phone for one in twenty).
    reachable = [
        m for m in manual.members(lambda m: m.level in TOP) if sms_reachable(manual.shop, m)
    ]
    testers = sorted(reachable)[:2]
    # A draft can be tried; a stranger cannot be a test member.
    with pytest.raises(CustopsError) as err:
        await manual.client.plans.trigger_plan_run(
            pb.TriggerPlanRunRequest(
                shop_id=manual.shop, plan_id=draft.plan_id, test_member_ids=["nobody-at-all"]
            )
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    test = (
        await manual.client.plans.trigger_plan_run(
            pb.TriggerPlanRunRequest(
                shop_id=manual.shop,
                plan_id=draft.plan_id,
                test_member_ids=testers,
                request_id="try-it",
            )
        )
    ).run
    assert test.kind == pb.RUN_KIND_TEST
    await manual.worker().drain()
    test = await manual.run(draft, test.run_id)
    assert test.state == pb.RUN_STATE_SUCCEEDED and test.progress.granted == 2
    assert set(_granted(manual.platform, draft.plan_id)) == set(testers)
    assert set(manual.sent(draft)) == set(testers)
    stats = (
        await manual.client.plans.get_plan_statistics(
            pb.GetPlanStatisticsRequest(shop_id=manual.shop, plan_id=draft.plan_id)
        )
    ).statistics
    assert (stats.runs, stats.benefits_granted, stats.budget_used) == (0, 0, 0)
    assert (stats.test_runs, stats.test_benefits_granted, stats.test_messages_sent) == (1, 2, 2)
    # Published and run for real: the testers count as never reached (their
    # frequency slot and the budget were not used).
    published = (
        await manual.client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=manual.shop, plan_id=draft.plan_id)
        )
    ).plan
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    audience = await _audience(manual.platform, published)
    real = [r for r in await manual.runs(published) if r.kind == pb.RUN_KIND_DELIVERY]
    assert [r.progress.granted for r in real] == [len(audience)]
    granted = _granted(manual.platform, draft.plan_id)
    assert granted == Counter({m: 2 if m in testers else 1 for m in audience})
