"""A shop's policy — its contact limits — and its members' consent (issue 19,
item 6): at most N messages per member per channel and window from all of
the shop's plans together, and no message on a channel a member opted out
of — each a skip reason per member. Before, every plan messaged on its own and consent
was not asked."""

from __future__ import annotations

from collections import Counter
from datetime import date

import grpc
import pytest

from custops.audit.v1 import audit_pb2 as apb
from custops.client import CustopsError
from custops.notify.v1 import notify_pb2
from custops.plan.v1 import plan_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from tests.integration.test_plan_time import _tick
from tests.integration.test_run_rules import Ops, at, daily_plan, manual
from tests.integration.test_runs import _audience, _granted

__all__ = ["manual"]  # the fixture, imported for pytest

SMS = notify_pb2.MESSAGE_CHANNEL_SMS
PUSH = notify_pb2.MESSAGE_CHANNEL_APP_PUSH


def _messaging(*channels: int, grants: bool = True) -> pb.Plan:
    """Daily at nine for the top levels: a coupon (unless not) and a message per channel."""
    plan = daily_plan()
    if not grants:
        del plan.actions[:]
    for channel in channels:
        plan.actions.add(
            send_message=pb.SendMessageAction(channel=channel, template_id="payday-hello")  # type: ignore[arg-type]
        )
    return plan


async def _policy(ops: Ops, *limits: pb.ContactLimit, request_id: str = "") -> pb.ShopPolicy:
    reply = await ops.client.plans.update_shop_policy(
        pb.UpdateShopPolicyRequest(
            policy=pb.ShopPolicy(shop_id=ops.shop, contact_limits=limits), request_id=request_id
        )
    )
    policy: pb.ShopPolicy = reply.policy
    return policy


def _sent_on(ops: Ops, plan: pb.Plan, channel: int) -> Counter[str]:
    assert ops.platform.stubs is not None and ops.platform.stubs.notifications is not None
    outbox = ops.platform.stubs.notifications.outbox
    return Counter(
        m.message.member_id
        for (shop, _member), sent in outbox.by_member.items()
        if shop == ops.shop
        for m in sent
        if m.message.source == f"plans/{plan.plan_id}" and m.message.channel == channel
    )


async def test_the_policy_is_read_replaced_replayed_and_audited(manual: Ops) -> None:
    empty = (
        await manual.client.plans.get_shop_policy(pb.GetShopPolicyRequest(shop_id=manual.shop))
    ).policy
    assert list(empty.contact_limits) == [] and empty.etag == "r0"
    daily_sms = pb.ContactLimit(channel=SMS, max_messages=1, window=pb.CONTACT_WINDOW_DAY)
    first = await _policy(manual, daily_sms, request_id="policy-1")
    again = await _policy(manual, daily_sms, request_id="policy-1")
    assert first.etag == "r1" and again == first  # a retry replays the first answer
    with pytest.raises(CustopsError) as err:
        await manual.client.plans.update_shop_policy(
            pb.UpdateShopPolicyRequest(policy=pb.ShopPolicy(shop_id=manual.shop, etag="r0"))
        )
    assert err.value.code is grpc.StatusCode.ABORTED
    with pytest.raises(CustopsError) as err:
        await _policy(
            manual,
            pb.ContactLimit(channel=SMS, max_messages=0, window=pb.CONTACT_WINDOW_DAY),
            pb.ContactLimit(channel=SMS, max_messages=2),
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in err.value.field_violations} == {
        "policy.contact_limits[0].max_messages",
        "policy.contact_limits[1].channel",
        "policy.contact_limits[1].window",
    }
    entries = (
        await manual.client.audit.list_audit_entries(
            apb.ListAuditEntriesRequest(shop_id=manual.shop, resource="shop_policy")
        ).first_page()
    ).entries
    assert [e.rpc.rsplit("/", 1)[1] for e in entries if e.outcome == "OK"] == ["UpdateShopPolicy"]


async def test_a_daily_sms_limit_holds_across_two_plans(manual: Ops) -> None:
    await _policy(
        manual, pb.ContactLimit(channel=SMS, max_messages=1, window=pb.CONTACT_WINDOW_DAY)
    )
    first = await manual.publish(_messaging(SMS))
    second = await manual.publish(_messaging(SMS))
    audience = await _audience(manual.platform, first)
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    texts = _sent_on(manual, first, SMS) + _sent_on(manual, second, SMS)
    assert set(texts.values()) == {1}  # one SMS each, from the two plans together
    # The message channel cannot reach some members: a message that failed
    # for good counts for nothing, so only the delivered ones are capped.
    runs = [r for p in (first, second) for r in await manual.runs(p)]
    unreachable = sum(r.progress.failed_by_reason["MEMBER_UNREACHABLE"] for r in runs)
    assert set(texts) <= audience and len(texts) + unreachable // 2 == len(audience)
    assert sum(r.progress.skipped["CONTACT_CAP"] for r in runs) == len(texts)
    # Grants are not capped: each plan's coupon went to everyone.
    for plan in (first, second):
        assert set(_granted(manual.platform, plan.plan_id)) == audience
    # The next day is another window.
    await _tick(manual, at(date(2026, 11, 26), 9, 0, 10))
    texts = _sent_on(manual, first, SMS) + _sent_on(manual, second, SMS)
    assert set(texts.values()) == {2} and len(texts) + unreachable // 2 == len(audience)


async def test_a_limit_that_caps_grants_withholds_the_coupon_too(manual: Ops) -> None:
    await _policy(
        manual,
        pb.ContactLimit(
            channel=SMS, max_messages=1, window=pb.CONTACT_WINDOW_WEEK, caps_grants=True
        ),
    )
    first = await manual.publish(_messaging(SMS))
    audience = await _audience(manual.platform, first)
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    second = await manual.publish(_messaging(SMS))
    await _tick(manual, at(date(2026, 11, 26), 9, 0, 10))  # same week: first's members capped
    # Everyone texted by the first plan is capped, grant and all; a member the
    # channel could not reach was not texted, so still gets the coupon.
    texted = set(_sent_on(manual, first, SMS))
    second_runs = await manual.runs(second)
    assert sum(r.progress.skipped["CONTACT_CAP"] for r in second_runs) == len(texted)
    assert set(_granted(manual.platform, second.plan_id)) == audience - texted
    assert _sent_on(manual, second, SMS) == Counter()


async def test_a_member_who_opted_out_of_sms_gets_no_sms(manual: Ops) -> None:
    plan = await manual.publish(_messaging(SMS, PUSH))
    texts_only = await manual.publish(_messaging(SMS, grants=False))
    audience = await _audience(manual.platform, plan)
    member = sorted(audience)[0]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{manual.platform.stubs_port}") as channel:
        await stubadmin_pb2_grpc.StubAdminServiceStub(channel).SetMemberConsent(
            stubadmin_pb2.SetMemberConsentRequest(
                shop_id=manual.shop, member_id=member, channel=SMS, opted_out=True
            )
        )
    await _tick(manual, at(date(2026, 11, 25), 9, 0, 10))
    (run,) = await manual.runs(plan)
    # The plan with a coupon, SMS and push: the coupon and the push, no SMS.
    assert member not in _sent_on(manual, plan, SMS)
    assert _sent_on(manual, plan, PUSH)[member] == 1
    assert _granted(manual.platform, plan.plan_id)[member] == 1
    # Everyone else was texted (but those the channel cannot reach).
    texted = set(_sent_on(manual, plan, SMS))
    assert member not in texted and texted <= audience
    assert len(texted) + run.progress.failed_by_reason["MEMBER_UNREACHABLE"] == len(audience) - 1
    assert dict(run.progress.skipped) == {"OPTED_OUT": 1}
    # The plan that only texts: nothing for them, on record as opted out.
    (texts_run,) = await manual.runs(texts_only)
    assert dict(texts_run.progress.skipped) == {"OPTED_OUT": 1}
    assert member not in _sent_on(manual, texts_only, SMS)
