"""The shoppers' side through a real server, after real runs: the member view
and checkout on micro-mall and retail plans, benefits used and given back
(once each), the timeline, the plan statistics, and shop isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.audience.v1 import audience_pb2
from custops.audit.v1 import audit_pb2 as apb
from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from server.app import Platform
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, POPULATION, _finished, _publish, immediate_plan


def _shop() -> str:
    """A shop of the test's own: on PostgreSQL the database lives for the session."""
    return f"scene-{uuid.uuid4().hex[:8]}"


_FAULTS = ("error_rate", "lost_response_rate", "timeout_rate", "latency_min", "latency_max")
# A shop whose audience system knows only the first SMALL members.
SMALL_SHOP, SMALL = f"small-{uuid.uuid4().hex[:8]}", 100


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[tuple[Platform, AsyncCustopsClient]]:
    platform = Platform(
        settings(
            database_url,
            stubs_population=POPULATION,
            stubs_shop_populations=f"{SMALL_SHOP}={SMALL}",
            engine_poll=0.05,
        ),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
        yield platform, client
    await platform.stop(grace=1)


def _plan(
    name: str,
    front_office: int,
    levels: list[str],
    grants: list[tuple[str, int]],
    product: int = pb.BUSINESS_PRODUCT_MEMBER_DAY,
) -> pb.Plan:
    """An immediate plan for members of `levels`, granting `grants` (template, kind)."""
    plan = immediate_plan()
    plan.display_name = name
    plan.business_product = product  # type: ignore[assignment]
    plan.front_office = front_office  # type: ignore[assignment]
    plan.audience.CopyFrom(
        audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=levels))
    )
    del plan.actions[0].grant_benefit.benefits[:]
    for template_id, kind in grants:
        plan.actions[0].grant_benefit.benefits.add(template_id=template_id, kind=kind, quantity=1)
    return plan


def gold_week() -> pb.Plan:
    """A micro-mall plan for the top levels (V3-V5), granting a coupon."""
    return _plan(
        "Gold week",
        pb.FRONT_OFFICE_MICRO_MALL,
        ["V3", "V4", "V5"],
        [("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON)],
    )


async def _member_of_level(platform: Platform, shop_id: str, level: str, skip: int = 0) -> str:
    found = [
        f"m{i:08d}"
        for i in range(POPULATION)
        if platform.stubs is not None
        and platform.stubs.population.member(shop_id, i).level == level
    ]
    return found[skip]


async def _coupon_plan(
    platform: Platform, client: AsyncCustopsClient, shop: str, level: str, skip: int = 0
) -> tuple[pb.Plan, str, spb.MemberBenefit]:
    """A micro-mall plan granting a coupon to the members of `level`, run to
    its end; one of those members, and the coupon they now hold."""
    plan = await _publish(
        client,
        _plan(
            f"Coupons for {level}",
            pb.FRONT_OFFICE_MICRO_MALL,
            [level],
            [("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON)],
        ),
        shop,
    )
    await _finished(client, plan)
    member = await _member_of_level(platform, shop, level, skip)
    (held,) = (
        await client.scenario.list_member_benefits(
            spb.ListMemberBenefitsRequest(shop_id=shop, member_id=member, plan_id=plan.plan_id)
        ).first_page()
    ).benefits
    return plan, member, held


async def _view(
    client: AsyncCustopsClient,
    shop_id: str,
    member_id: str,
    office: int = pb.FRONT_OFFICE_MICRO_MALL,
) -> spb.GetMemberViewResponse:
    response: spb.GetMemberViewResponse = await client.scenario.get_member_view(
        spb.GetMemberViewRequest(shop_id=shop_id, member_id=member_id, front_office=office)  # type: ignore[arg-type]
    )
    return response


async def _statistics(client: AsyncCustopsClient, plan: pb.Plan) -> pb.PlanStatistics:
    response: pb.GetPlanStatisticsResponse = await client.plans.get_plan_statistics(
        pb.GetPlanStatisticsRequest(shop_id=plan.shop_id, plan_id=plan.plan_id)
    )
    return response.statistics


async def test_the_member_view_shows_the_plans_that_apply_to_this_member_only(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    gold = await _publish(client, gold_week(), shop)
    newcomers = await _publish(
        client,
        _plan(
            "Welcome days",
            pb.FRONT_OFFICE_MICRO_MALL,
            ["V0"],
            [("points-x2", benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER)],
            product=pb.BUSINESS_PRODUCT_HOLIDAY,
        ),
        shop,
    )
    store = await _publish(
        client,
        _plan(
            "Store day",
            pb.FRONT_OFFICE_RETAIL,
            ["V3", "V4", "V5"],
            [("discount-85", benefit_pb2.BENEFIT_KIND_DISCOUNT)],
        ),
        shop,
    )
    for plan in (gold, newcomers, store):
        await _finished(client, plan)
    insider = await _member_of_level(platform, shop, "V3")
    newcomer = await _member_of_level(platform, shop, "V0")

    mall = await _view(client, shop, insider)
    assert [p.plan_id for p in mall.plans] == [gold.plan_id]  # not the V0 plan, not the store's
    assert mall.plans[0].headline == "Member day: Gold week"
    # What the member holds, whichever plan granted it, soonest expiry first.
    assert sorted(b.template_id for b in mall.unused_benefits) == [
        "coupon-10-off-100",
        "discount-85",
    ]
    coupon = next(b for b in mall.unused_benefits if b.template_id == "coupon-10-off-100")
    assert coupon.status == spb.MEMBER_BENEFIT_STATUS_UNUSED and coupon.plan_id == gold.plan_id
    assert coupon.valid_until.ToDatetime() > NOW.replace(tzinfo=None)
    assert [r.kind for r in mall.recent_records] == [spb.RECORD_KIND_BENEFIT_GRANTED] * 2

    # The store's page: the store plan and its effect; the coupon serves in store too.
    shop_floor = await _view(client, shop, insider, pb.FRONT_OFFICE_RETAIL)
    assert [p.plan_id for p in shop_floor.plans] == [store.plan_id]
    assert [(e.kind, e.basis_points) for e in shop_floor.plans[0].effects] == [
        (benefit_pb2.BENEFIT_KIND_DISCOUNT, 8500)
    ]

    welcome = await _view(client, shop, newcomer)
    assert [p.plan_id for p in welcome.plans] == [newcomers.plan_id]
    assert welcome.plans[0].effects[0].basis_points == 20000  # double points
    assert [b.template_id for b in welcome.unused_benefits] == ["points-x2"]

    # Paused or ended plans are seen by nobody, at once.
    await client.plans.pause_plan(pb.PausePlanRequest(shop_id=shop, plan_id=gold.plan_id))
    await client.plans.end_plan(pb.EndPlanRequest(shop_id=shop, plan_id=newcomers.plan_id))
    assert list((await _view(client, shop, insider)).plans) == []
    assert list((await _view(client, shop, newcomer)).plans) == []
    await client.plans.resume_plan(pb.ResumePlanRequest(shop_id=shop, plan_id=gold.plan_id))
    assert [p.plan_id for p in (await _view(client, shop, insider)).plans] == [gold.plan_id]


async def test_checkout_gives_the_store_effects_and_the_benefits_this_order_can_use(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    plan = await _publish(
        client,
        _plan(
            "Member day in store",
            pb.FRONT_OFFICE_RETAIL_CHAIN,
            ["V1", "V2", "V3", "V4", "V5"],
            [
                ("points-x2", benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER),
                ("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON),
                ("free-shipping", benefit_pb2.BENEFIT_KIND_FREE_SHIPPING),
            ],
        ),
        shop,
    )
    await _finished(client, plan)
    member = await _member_of_level(platform, shop, "V2", skip=1)
    outsider = await _member_of_level(platform, shop, "V0", skip=1)

    async def checkout(member_id: str, amount: int) -> spb.GetCheckoutBenefitsResponse:
        response: spb.GetCheckoutBenefitsResponse = await client.scenario.get_checkout_benefits(
            spb.GetCheckoutBenefitsRequest(
                shop_id=shop, member_id=member_id, store_id="store-1", order_amount=amount
            )
        )
        return response

    big = await checkout(member, 20000)
    assert [p.plan_id for p in big.plans] == [plan.plan_id]
    # Free shipping means nothing in a store: neither an effect nor a benefit there.
    assert [(e.kind, e.basis_points) for e in big.effects] == [
        (benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER, 20000)
    ]
    assert sorted(b.template_id for b in big.usable_benefits) == [
        "coupon-10-off-100",
        "points-x2",
    ]
    # Below the coupon's ¥100 threshold the coupon is not usable.
    small = await checkout(member, 5000)
    assert [b.template_id for b in small.usable_benefits] == ["points-x2"]
    # Outside the plan's audience: no effects, no benefits.
    none = await checkout(outsider, 20000)
    assert (list(none.plans), list(none.effects), list(none.usable_benefits)) == ([], [], [])


async def test_use_and_replenish_once_each_with_records_and_statistics(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    clock = platform.clock
    assert isinstance(clock, SteppingClock)
    plan, member, coupon = await _coupon_plan(platform, client, shop, "V4")
    granted = (await _statistics(client, plan)).benefits_granted
    assert granted > 1

    clock.current += timedelta(minutes=1)
    use = spb.ReportBenefitUsedRequest(
        shop_id=shop,
        member_id=member,
        benefit_instance_id=coupon.benefit_instance_id,
        order_id="order-1",
        request_id="use-1",
    )
    first = await client.scenario.report_benefit_used(use)
    again = await client.scenario.report_benefit_used(use)
    assert first.benefit.status == spb.MEMBER_BENEFIT_STATUS_USED
    assert first.benefit.order_id == "order-1"
    assert first.record.kind == spb.RECORD_KIND_BENEFIT_USED
    assert again == first  # the same report: the same answer, nothing changed
    assert platform.stubs is not None
    held = platform.stubs.benefits.instances[coupon.benefit_instance_id]
    assert (held.state, held.order_id) == (benefit_pb2.BENEFIT_STATE_USED, "order-1")
    stats = await _statistics(client, plan)
    assert (stats.benefits_used, stats.benefits_replenished) == (1, 0)
    assert stats.use_rate == pytest.approx(1 / granted)

    # Another order cannot use it; it cannot be given back for another order.
    with pytest.raises(CustopsError) as err:
        await client.scenario.report_benefit_used(
            spb.ReportBenefitUsedRequest(
                shop_id=shop,
                member_id=member,
                benefit_instance_id=coupon.benefit_instance_id,
                order_id="order-2",
            )
        )
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "BENEFIT_USED",
    )

    clock.current += timedelta(minutes=1)
    back = spb.ReplenishBenefitRequest(
        shop_id=shop,
        member_id=member,
        benefit_instance_id=coupon.benefit_instance_id,
        order_id="order-1",
        reason="refunded",
        request_id="refund-1",
    )
    first_back = await client.scenario.replenish_benefit(back)
    assert first_back.benefit.status == spb.MEMBER_BENEFIT_STATUS_UNUSED
    assert first_back.record.kind == spb.RECORD_KIND_BENEFIT_REPLENISHED
    assert await client.scenario.replenish_benefit(back) == first_back
    assert held.state == benefit_pb2.BENEFIT_STATE_UNUSED
    # A new request for the same refund is refused: it was given back once.
    back.request_id = "refund-2"
    with pytest.raises(CustopsError) as err:
        await client.scenario.replenish_benefit(back)
    assert err.value.reason == "BENEFIT_ALREADY_REPLENISHED"
    stats = await _statistics(client, plan)
    assert (stats.benefits_used, stats.benefits_replenished, stats.use_rate) == (1, 1, 0.0)

    # What was never used cannot be given back.
    back.order_id, back.request_id = "order-9", "refund-9"
    with pytest.raises(CustopsError) as err:
        await client.scenario.replenish_benefit(back)
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "BENEFIT_NOT_USED",
    )

    # The timeline: granted, used, given back, newest first.
    timeline = await client.scenario.list_member_records(
        spb.ListMemberRecordsRequest(shop_id=shop, member_id=member)
    ).first_page()
    assert [r.kind for r in timeline.records if r.plan_id == plan.plan_id] == [
        spb.RECORD_KIND_BENEFIT_REPLENISHED,
        spb.RECORD_KIND_BENEFIT_USED,
        spb.RECORD_KIND_BENEFIT_GRANTED,
    ]
    assert timeline.records[1].order_id == "order-1"

    # Filters: by status and by plan.
    async def statuses(status: int) -> list[str]:
        page = await client.scenario.list_member_benefits(
            spb.ListMemberBenefitsRequest(
                shop_id=shop,
                member_id=member,
                status=status,  # type: ignore[arg-type]
                plan_id=plan.plan_id,
            )
        ).first_page()
        return [b.benefit_instance_id for b in page.benefits]

    assert await statuses(spb.MEMBER_BENEFIT_STATUS_UNUSED) == [coupon.benefit_instance_id]
    assert await statuses(spb.MEMBER_BENEFIT_STATUS_USED) == []
    # Past its end the coupon is expired, and an expired use cannot come back.
    await client.scenario.report_benefit_used(use)  # order-1's record exists: no change
    assert await statuses(spb.MEMBER_BENEFIT_STATUS_UNUSED) == [coupon.benefit_instance_id]
    use.order_id = "order-3"
    with pytest.raises(CustopsError) as err:  # another report under the same request id
        await client.scenario.report_benefit_used(use)
    assert err.value.reason == "REQUEST_ID_REUSED"
    use.request_id = "use-3"
    await client.scenario.report_benefit_used(use)
    clock.current = coupon.valid_until.ToDatetime().replace(tzinfo=NOW.tzinfo) + timedelta(
        seconds=1
    )
    assert await statuses(spb.MEMBER_BENEFIT_STATUS_USED) == [coupon.benefit_instance_id]
    back.order_id, back.request_id = "order-3", "refund-3"
    with pytest.raises(CustopsError) as err:
        await client.scenario.replenish_benefit(back)
    assert err.value.reason == "BENEFIT_EXPIRED"


async def test_an_ended_plan_gives_back_only_when_its_rule_says_so(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    strict = _plan(
        "Strict", pb.FRONT_OFFICE_MICRO_MALL, ["V5"], [("gift-mug", benefit_pb2.BENEFIT_KIND_GIFT)]
    )
    lenient = _plan(
        "Lenient",
        pb.FRONT_OFFICE_MICRO_MALL,
        ["V5"],
        [("points-100", benefit_pb2.BENEFIT_KIND_POINTS)],
    )
    lenient.limits.replenish_after_end = True
    member = await _member_of_level(platform, shop, "V5", skip=2)
    outcomes = []
    for draft in (strict, lenient):
        plan = await _publish(client, draft, shop)
        await _finished(client, plan)
        (held,) = (
            await client.scenario.list_member_benefits(
                spb.ListMemberBenefitsRequest(shop_id=shop, member_id=member, plan_id=plan.plan_id)
            ).first_page()
        ).benefits
        ids = dict(shop_id=shop, member_id=member, benefit_instance_id=held.benefit_instance_id)
        await client.scenario.report_benefit_used(
            spb.ReportBenefitUsedRequest(**ids, order_id="o1")
        )
        await client.scenario.report_benefit_used(
            spb.ReportBenefitUsedRequest(**ids, order_id="o1")
        )
        await client.plans.end_plan(pb.EndPlanRequest(shop_id=shop, plan_id=plan.plan_id))
        try:
            await client.scenario.replenish_benefit(
                spb.ReplenishBenefitRequest(**ids, order_id="o1", request_id="r1")
            )
            outcomes.append("given back")
        except CustopsError as exc:
            outcomes.append(exc.reason)
    assert outcomes == ["PLAN_ENDED", "given back"]


async def test_a_slow_benefit_platform_answers_retryably_and_the_retry_gives_back_once(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    plan, member, held = await _coupon_plan(platform, client, shop, "V2", skip=3)
    ids = dict(shop_id=shop, member_id=member, benefit_instance_id=held.benefit_instance_id)
    await client.scenario.report_benefit_used(spb.ReportBenefitUsedRequest(**ids, order_id="o1"))
    back = spb.ReplenishBenefitRequest(**ids, order_id="o1", request_id="refund-slow")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel:
        admin = stubadmin_pb2_grpc.StubAdminServiceStub(channel)

        async def faults(**kw: object) -> None:
            await admin.UpdateStubSettings(
                stubadmin_pb2.UpdateStubSettingsRequest(
                    settings=stubadmin_pb2.StubSettings(
                        system=stubadmin_pb2.STUB_SYSTEM_BENEFIT,
                        faults=stubadmin_pb2.Faults(**kw),  # type: ignore[arg-type]
                    ),
                    update_mask=FieldMask(paths=[f"faults.{name}" for name in _FAULTS]),
                )
            )

        # Slower than the caller's deadline: DEADLINE_EXCEEDED, with a retry hint.
        await faults(latency_min={"seconds": 2}, latency_max={"seconds": 2})
        with pytest.raises(CustopsError) as err:
            await client.scenario.replenish_benefit(back, timeout=0.5)
        assert err.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
        # Done there, but the answer lost on the way: UNAVAILABLE, retry hint.
        await faults(lost_response_rate=1.0)
        with pytest.raises(CustopsError) as err:
            await client.scenario.replenish_benefit(back)
        assert err.value.code is grpc.StatusCode.UNAVAILABLE
        assert err.value.retry_delay is not None and err.value.retry_delay > 0
        assert platform.stubs is not None
        assert platform.stubs.benefits.instances[held.benefit_instance_id].state == (
            benefit_pb2.BENEFIT_STATE_UNUSED
        )
        await faults()
        done = await client.scenario.replenish_benefit(back)
    assert done.benefit.status == spb.MEMBER_BENEFIT_STATUS_UNUSED
    assert await client.scenario.replenish_benefit(back) == done
    assert (await _statistics(client, plan)).benefits_replenished == 1


async def test_a_shop_sees_nothing_of_another_shops_members(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    # A member of this shop beyond the small shop's members.
    _, member, held = await _coupon_plan(platform, client, shop, "V1", skip=60)
    assert int(member[1:]) >= SMALL

    calls = [
        client.scenario.get_member_view(
            spb.GetMemberViewRequest(
                shop_id=SMALL_SHOP, member_id=member, front_office=pb.FRONT_OFFICE_MICRO_MALL
            )
        ),
        client.scenario.get_checkout_benefits(
            spb.GetCheckoutBenefitsRequest(shop_id=SMALL_SHOP, member_id=member, store_id="s")
        ),
        client.scenario.list_member_benefits(
            spb.ListMemberBenefitsRequest(shop_id=SMALL_SHOP, member_id=member)
        ).first_page(),
        client.scenario.list_member_records(
            spb.ListMemberRecordsRequest(shop_id=SMALL_SHOP, member_id=member)
        ).first_page(),
        # The instance asked for under another shop, or under another member.
        client.scenario.report_benefit_used(
            spb.ReportBenefitUsedRequest(
                shop_id=SMALL_SHOP,
                member_id="m00000001",
                benefit_instance_id=held.benefit_instance_id,
                order_id="o1",
            )
        ),
        client.scenario.replenish_benefit(
            spb.ReplenishBenefitRequest(
                shop_id=shop,
                member_id="m00000001",
                benefit_instance_id=held.benefit_instance_id,
                order_id="o1",
            )
        ),
    ]
    for call in calls:
        with pytest.raises(CustopsError) as err:
            await call
        assert err.value.code is grpc.StatusCode.NOT_FOUND
    assert platform.stubs is not None
    assert platform.stubs.benefits.instances[held.benefit_instance_id].state == (
        benefit_pb2.BENEFIT_STATE_UNUSED
    )


async def test_bad_scenario_requests_name_their_fields(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    _, client = running
    shop = _shop()
    cases = [
        (
            client.scenario.get_member_view(
                spb.GetMemberViewRequest(shop_id="", member_id="m 1", record_limit=-1)
            ),
            ["shop_id", "member_id", "front_office", "record_limit"],
        ),
        (
            client.scenario.get_checkout_benefits(
                spb.GetCheckoutBenefitsRequest(shop_id=shop, member_id="m1", order_amount=-5)
            ),
            ["store_id", "order_amount"],
        ),
        (
            client.scenario.list_member_benefits(
                spb.ListMemberBenefitsRequest(
                    shop_id=shop,
                    member_id="m1",
                    plan_id="bad id",
                    page_size=-1,
                )
            ).first_page(),
            ["page_size", "plan_id"],
        ),
        (  # an enum number the contract does not define: before any call's own checks
            client.scenario.list_member_benefits(
                spb.ListMemberBenefitsRequest(
                    shop_id=shop,
                    member_id="m1",
                    status=9,  # type: ignore[arg-type]
                    page_size=-1,
                )
            ).first_page(),
            ["status"],
        ),
        (
            client.scenario.report_benefit_used(
                spb.ReportBenefitUsedRequest(shop_id=shop, member_id="m1", request_id="no spaces")
            ),
            ["benefit_instance_id", "order_id", "request_id"],
        ),
        (
            client.scenario.replenish_benefit(
                spb.ReplenishBenefitRequest(
                    shop_id=shop, member_id="m1", benefit_instance_id="b1", reason="x" * 201
                )
            ),
            ["order_id", "reason"],
        ),
    ]
    for call, fields in cases:
        with pytest.raises(CustopsError) as err:
            await call
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in err.value.field_violations] == fields


async def test_ending_a_plan_with_take_back_shows_on_the_members_side(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    shop = _shop()
    plan = await _publish(
        client,
        _plan(
            "Short",
            pb.FRONT_OFFICE_MICRO_MALL,
            ["V5"],
            [("gift-mug", benefit_pb2.BENEFIT_KIND_GIFT)],
        ),
        shop,
    )
    await _finished(client, plan)
    member = await _member_of_level(platform, shop, "V5")
    assert isinstance(platform.clock, SteppingClock)
    platform.clock.current += timedelta(minutes=1)
    await client.plans.end_plan(
        pb.EndPlanRequest(shop_id=shop, plan_id=plan.plan_id, recover_unused_benefits=True)
    )
    (held,) = (
        await client.scenario.list_member_benefits(
            spb.ListMemberBenefitsRequest(
                shop_id=shop, member_id=member, status=spb.MEMBER_BENEFIT_STATUS_RECOVERED
            )
        ).first_page()
    ).benefits
    assert held.plan_id == plan.plan_id
    timeline = await client.scenario.list_member_records(
        spb.ListMemberRecordsRequest(shop_id=shop, member_id=member)
    ).first_page()
    assert [r.kind for r in timeline.records] == [
        spb.RECORD_KIND_BENEFIT_RECOVERED,
        spb.RECORD_KIND_BENEFIT_GRANTED,
    ]
    stats = await _statistics(client, plan)
    assert stats.benefits_recovered == stats.benefits_granted > 0
    # The audit log has the plan's end and what it took back, both by the call.
    log = await client.audit.list_audit_entries(
        apb.ListAuditEntriesRequest(shop_id=shop, resource=f"plans/{plan.plan_id}")
    ).first_page()
    ending = [e for e in log.entries if e.rpc.endswith("/EndPlan")]
    assert {e.outcome for e in ending} == {"OK"}
    taken = [e.after["benefits_taken_back"] for e in ending if "benefits_taken_back" in e.after]
    assert taken == [stats.benefits_recovered]
    assert any("state" in e.after and e.after["state"] == "ended" for e in ending)


async def test_pages_asked_together_answer_as_pages_asked_one_by_one(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    """Pages that arrive together are answered from shared batches (one
    audience call and one read); each still gets its own member's
    answer, shaped for its own front office, within its own limits."""
    platform, client = running
    shop = _shop()
    online = await _publish(
        client,
        _plan(
            "Online week",
            pb.FRONT_OFFICE_MICRO_MALL,
            ["V1", "V2", "V3", "V4", "V5"],
            [
                ("free-shipping", benefit_pb2.BENEFIT_KIND_FREE_SHIPPING),
                ("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON),
                ("points-x2", benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER),
            ],
        ),
        shop,
    )
    store = await _publish(
        client,
        _plan(
            "Store week",
            pb.FRONT_OFFICE_RETAIL,
            ["V3", "V4", "V5"],
            [("discount-85", benefit_pb2.BENEFIT_KIND_DISCOUNT)],
        ),
        shop,
    )
    for plan in (online, store):
        await _finished(client, plan)
    members = [await _member_of_level(platform, shop, level) for level in ("V0", "V1", "V3")]
    members += [await _member_of_level(platform, shop, level, skip=2) for level in ("V2", "V4")]
    offices = (pb.FRONT_OFFICE_MICRO_MALL, pb.FRONT_OFFICE_RETAIL, pb.FRONT_OFFICE_RETAIL_CHAIN)
    asks = [
        spb.GetMemberViewRequest(
            shop_id=shop, member_id=m, front_office=o, benefit_limit=limit, record_limit=limit
        )
        for m in members
        for o in offices
        for limit in (1, 2)
    ]
    stranger = spb.GetMemberViewRequest(
        shop_id=shop, member_id=f"m{POPULATION + 5:08d}", front_office=offices[0]
    )

    async def page(request: spb.GetMemberViewRequest) -> spb.GetMemberViewResponse:
        response: spb.GetMemberViewResponse = await client.scenario.get_member_view(request)
        return response

    alone = [await page(a) for a in asks]
    assert platform.scenario is not None
    before = platform.scenario.pages.batches
    together = await asyncio.gather(
        *(page(a) for a in asks), page(stranger), return_exceptions=True
    )
    assert together[:-1] == alone
    assert isinstance(together[-1], CustopsError)  # only the stranger's page fails
    assert together[-1].code is grpc.StatusCode.NOT_FOUND
    # The pages went out in fewer batches than pages.
    assert platform.scenario.pages.batches - before < len(together)

    # Each page holds the soonest-ending benefits its front office can use,
    # as the member's own list (another query) has them.
    for ask, answer in zip(asks, alone, strict=True):
        held = (
            await client.scenario.list_member_benefits(
                spb.ListMemberBenefitsRequest(
                    shop_id=shop,
                    member_id=ask.member_id,
                    status=spb.MEMBER_BENEFIT_STATUS_UNUSED,
                )
            ).first_page()
        ).benefits
        usable = [
            b
            for b in held
            if ask.front_office == pb.FRONT_OFFICE_MICRO_MALL
            or b.kind != benefit_pb2.BENEFIT_KIND_FREE_SHIPPING
        ]
        usable.sort(key=lambda b: (b.valid_until.ToDatetime(), b.benefit_instance_id))
        expected = [b.benefit_instance_id for b in usable[: ask.benefit_limit]]
        assert [b.benefit_instance_id for b in answer.unused_benefits] == expected
        assert len(answer.recent_records) == min(ask.record_limit, len(held))
    by_office = {(a.member_id, a.front_office): r for a, r in zip(asks, alone, strict=True)}
    # Within the same limit, the mall page holds free shipping where the
    # store page holds the next benefit a store can use instead.
    limited = {
        (a.member_id, a.front_office, a.benefit_limit): r for a, r in zip(asks, alone, strict=True)
    }
    kinds = {
        office: [b.kind for b in limited[(members[1], office, 2)].unused_benefits]
        for office in offices
    }
    assert benefit_pb2.BENEFIT_KIND_FREE_SHIPPING in kinds[pb.FRONT_OFFICE_MICRO_MALL]
    assert kinds[pb.FRONT_OFFICE_RETAIL] == kinds[pb.FRONT_OFFICE_RETAIL_CHAIN]
    assert len(kinds[pb.FRONT_OFFICE_RETAIL]) == 2
    assert benefit_pb2.BENEFIT_KIND_FREE_SHIPPING not in kinds[pb.FRONT_OFFICE_RETAIL]
    gold = members[2]  # V3: both plans
    assert [p.plan_id for p in by_office[(gold, pb.FRONT_OFFICE_MICRO_MALL)].plans] == [
        online.plan_id
    ]
    assert [p.plan_id for p in by_office[(gold, pb.FRONT_OFFICE_RETAIL)].plans] == [store.plan_id]
    assert list(by_office[(members[0], pb.FRONT_OFFICE_MICRO_MALL)].plans) == []  # V0


async def test_racing_give_backs_give_back_once_and_the_losers_are_told(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    """Issue 22, item 7: 50 ReplenishBenefit calls at once with different
    request ids gave the benefit back once but told most of them OK; each
    loser is answered as it would be had it come second."""
    platform, client = running
    shop = _shop()
    clock = platform.clock
    assert isinstance(clock, SteppingClock)
    plan, member, coupon = await _coupon_plan(platform, client, shop, "V4")
    clock.current += timedelta(minutes=1)
    answers = await used_then_given_back_at_once([client], shop, member, coupon.benefit_instance_id)
    assert answers == {"OK": 1, "BENEFIT_ALREADY_REPLENISHED": 49}
    assert (await _statistics(client, plan)).benefits_replenished == 1


async def used_then_given_back_at_once(
    clients: Sequence[AsyncCustopsClient], shop: str, member: str, instance_id: str, calls: int = 50
) -> Counter[str]:
    """The benefit used by one order, then `calls` give-backs of that use at
    once, each with its own request id, spread over `clients`: how many were
    answered OK, and how many with each refusal's reason."""
    await clients[0].scenario.report_benefit_used(
        spb.ReportBenefitUsedRequest(
            shop_id=shop, member_id=member, benefit_instance_id=instance_id, order_id="order-1"
        )
    )

    async def give_back(n: int) -> str:
        try:
            await clients[n % len(clients)].scenario.replenish_benefit(
                spb.ReplenishBenefitRequest(
                    shop_id=shop,
                    member_id=member,
                    benefit_instance_id=instance_id,
                    order_id="order-1",
                    reason="refunded",
                    request_id=f"give-back-{n}",
                )
            )
        except CustopsError as err:
            return err.reason
        return "OK"

    return Counter(await asyncio.gather(*(give_back(n) for n in range(calls))))
