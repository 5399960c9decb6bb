"""Plans through the real server, over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.audience.v1 import audience_pb2
from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient, CustopsError
from custops.notify.v1 import notify_pb2
from custops.plan.v1 import plan_pb2 as pb


def shop() -> str:
    return f"shop-{uuid.uuid4().hex[:8]}"


def birthday_plan(name: str = "Birthday gift") -> pb.Plan:
    return pb.Plan(
        display_name=name,
        description="a coupon in the birthday month",
        business_product=pb.BUSINESS_PRODUCT_BIRTHDAY,
        front_office=pb.FRONT_OFFICE_MICRO_MALL,
        time_zone="Asia/Shanghai",
        audience=audience_pb2.AudienceRule(
            all_of=audience_pb2.RuleList(
                rules=[
                    audience_pb2.AudienceRule(
                        birthday=audience_pb2.BirthdayCondition(
                            scope=audience_pb2.BIRTHDAY_SCOPE_MONTH, days_ahead=3
                        )
                    ),
                    audience_pb2.AudienceRule(
                        negate=audience_pb2.AudienceRule(
                            levels=audience_pb2.LevelCondition(levels=["V0"])
                        )
                    ),
                ]
            )
        ),
        time=pb.PlanTime(
            effective="* * * * * * * 1",
            term="0-0 0-0 0-0 1-31 1-12 * 2026-2027 2",
            execution="0 0 9 * * ? * 31",
            missed_fire_policy=pb.MISSED_FIRE_POLICY_SKIP,
        ),
        actions=[
            pb.Action(
                grant_benefit=pb.GrantBenefitAction(
                    benefits=[
                        pb.BenefitGrant(
                            template_id="coupon-10-off-100",
                            kind=benefit_pb2.BENEFIT_KIND_COUPON,
                            quantity=1,
                        )
                    ]
                )
            ),
            pb.Action(
                send_message=pb.SendMessageAction(
                    channel=notify_pb2.MESSAGE_CHANNEL_SMS,
                    template_id="birthday-sms",
                    params={"greeting": "生日快乐"},
                )
            ),
        ],
        limits=pb.PlanLimits(
            frequency=pb.FrequencyLimit(max_times=1, window=pb.FREQUENCY_WINDOW_BIRTHDAY_YEAR),
            total_budget=10_000,
            quiet_hours=pb.QuietHours(
                start="22:00", end="08:00", policy=pb.QUIET_HOURS_POLICY_DEFER
            ),
            rate_override=50.0,
        ),
    )


async def test_create_then_get_round_trips_every_field(client: AsyncCustopsClient) -> None:
    s = shop()
    sent = birthday_plan()
    created = (await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=sent))).plan
    got = (await client.plans.get_plan(pb.GetPlanRequest(shop_id=s, plan_id=created.plan_id))).plan

    assert got == created
    assert got.name == f"shops/{s}/plans/{created.plan_id}"
    assert got.state == pb.PLAN_STATE_DRAFT
    assert got.etag
    expected = pb.Plan()
    expected.CopyFrom(sent)
    for output_only in ("name", "plan_id", "shop_id", "state", "etag", "create_by", "update_by"):
        setattr(expected, output_only, getattr(got, output_only))
    for stamp in ("create_time", "update_time"):
        getattr(expected, stamp).CopyFrom(getattr(got, stamp))
    # Sent as the deprecated enum, the product comes back by id too; the
    # measurement left out comes back with its defaults.
    expected.product_id = "birthday"
    expected.measurement.attribution_window.FromTimedelta(timedelta(days=7))
    assert got == expected


async def test_another_shop_sees_nothing(client: AsyncCustopsClient) -> None:
    owner, other = shop(), shop()
    plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=owner, plan=birthday_plan()))
    ).plan

    for call in (
        client.plans.get_plan(pb.GetPlanRequest(shop_id=other, plan_id=plan.plan_id)),
        client.plans.delete_plan(pb.DeletePlanRequest(shop_id=other, plan_id=plan.plan_id)),
        client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=other,
                plan=pb.Plan(plan_id=plan.plan_id, display_name="stolen"),
                update_mask=FieldMask(paths=["display_name"]),
            )
        ),
    ):
        with pytest.raises(CustopsError) as err:
            await call
        assert err.value.code is grpc.StatusCode.NOT_FOUND
    listed = await client.plans.list_plans(pb.ListPlansRequest(shop_id=other)).first_page()
    assert list(listed.plans) == []
    still = await client.plans.get_plan(pb.GetPlanRequest(shop_id=owner, plan_id=plan.plan_id))
    assert still.plan.display_name == "Birthday gift"


async def test_list_pages_newest_first_with_filters(client: AsyncCustopsClient) -> None:
    s = shop()
    ids = []
    for i in range(5):
        plan = birthday_plan(f"plan {i}")
        if i % 2:
            plan.business_product = pb.BUSINESS_PRODUCT_HOLIDAY
        created = await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=plan))
        ids.append(created.plan.plan_id)

    seen, token = [], ""
    for _ in range(5):
        page = await client.plans.list_plans(
            pb.ListPlansRequest(shop_id=s, page_size=2, page_token=token)
        ).first_page()
        assert len(page.plans) <= 2
        seen += [p.plan_id for p in page.plans]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))

    holiday = await client.plans.list_plans(
        pb.ListPlansRequest(shop_id=s, business_product=pb.BUSINESS_PRODUCT_HOLIDAY)
    ).first_page()
    assert [p.plan_id for p in holiday.plans] == [ids[3], ids[1]]

    # A token is bound to its query: reusing it with another filter is refused.
    first = await client.plans.list_plans(pb.ListPlansRequest(shop_id=s, page_size=2)).first_page()
    with pytest.raises(CustopsError) as err:
        await client.plans.list_plans(
            pb.ListPlansRequest(
                shop_id=s, page_token=first.next_page_token, state=pb.PLAN_STATE_ACTIVE
            )
        ).first_page()
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["page_token"]


async def test_update_with_mask_and_etag(client: AsyncCustopsClient) -> None:
    s = shop()
    plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=birthday_plan()))
    ).plan

    updated = (
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=s,
                plan=pb.Plan(
                    plan_id=plan.plan_id,
                    etag=plan.etag,
                    display_name="Renamed",
                    description="ignored: not in the mask",
                ),
                update_mask=FieldMask(paths=["display_name"]),
            )
        )
    ).plan
    assert updated.display_name == "Renamed"
    assert updated.description == plan.description
    assert updated.audience == plan.audience
    assert updated.etag != plan.etag

    with pytest.raises(CustopsError) as err:
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=s,
                plan=pb.Plan(plan_id=plan.plan_id, etag=plan.etag, display_name="Stale"),
                update_mask=FieldMask(paths=["display_name"]),
            )
        )
    assert err.value.code is grpc.StatusCode.ABORTED
    assert err.value.reason == "ETAG_MISMATCH"

    with pytest.raises(CustopsError) as err:
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=s,
                plan=pb.Plan(plan_id=plan.plan_id, display_name=""),
                update_mask=FieldMask(paths=["display_name", "state"]),
            )
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in err.value.field_violations}
    assert fields == {"update_mask.paths[1]"}


async def test_concurrent_updates_one_wins(client: AsyncCustopsClient) -> None:
    s = shop()
    plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=birthday_plan()))
    ).plan

    async def rename(name: str) -> grpc.StatusCode:
        try:
            await client.plans.update_plan(
                pb.UpdatePlanRequest(
                    shop_id=s,
                    plan=pb.Plan(plan_id=plan.plan_id, etag=plan.etag, display_name=name),
                    update_mask=FieldMask(paths=["display_name"]),
                )
            )
            return grpc.StatusCode.OK
        except CustopsError as exc:
            return exc.code

    codes = await asyncio.gather(*(rename(f"name {i}") for i in range(4)))
    assert sorted(c.name for c in codes) == ["ABORTED", "ABORTED", "ABORTED", "OK"]


async def test_retry_with_request_id_creates_once(client: AsyncCustopsClient) -> None:
    s = shop()
    request = pb.CreatePlanRequest(shop_id=s, plan=birthday_plan(), request_id="req-42")
    first = await client.plans.create_plan(request)
    again = await client.plans.create_plan(request)
    assert again.plan == first.plan
    listed = await client.plans.list_plans(pb.ListPlansRequest(shop_id=s)).first_page()
    assert [p.plan_id for p in listed.plans] == [first.plan.plan_id]

    # Concurrent retries of one request still create one plan.
    racing = pb.CreatePlanRequest(shop_id=s, plan=birthday_plan("race"), request_id="req-43")
    results = await asyncio.gather(*(client.plans.create_plan(racing) for _ in range(4)))
    assert len({r.plan.plan_id for r in results}) == 1

    reused = pb.CreatePlanRequest(shop_id=s, plan=birthday_plan("other"), request_id="req-42")
    with pytest.raises(CustopsError) as err:
        await client.plans.create_plan(reused)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "REQUEST_ID_REUSED"


async def test_delete_draft(client: AsyncCustopsClient) -> None:
    s = shop()
    plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=birthday_plan()))
    ).plan
    await client.plans.delete_plan(pb.DeletePlanRequest(shop_id=s, plan_id=plan.plan_id))
    with pytest.raises(CustopsError) as err:
        await client.plans.get_plan(pb.GetPlanRequest(shop_id=s, plan_id=plan.plan_id))
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    assert err.value.reason == "PLAN_NOT_FOUND"


async def test_update_racing_delete_never_loses_the_update(client: AsyncCustopsClient) -> None:
    for round_ in range(5):
        s = shop()
        plan = (
            await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=birthday_plan()))
        ).plan
        update = client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=s,
                plan=pb.Plan(plan_id=plan.plan_id, etag=plan.etag, display_name=f"new {round_}"),
                update_mask=FieldMask(paths=["display_name"]),
            )
        )
        delete = client.plans.delete_plan(
            pb.DeletePlanRequest(shop_id=s, plan_id=plan.plan_id, etag=plan.etag)
        )
        outcomes = await asyncio.gather(update, delete, return_exceptions=True)
        ok = [not isinstance(o, BaseException) for o in outcomes]
        assert ok.count(True) == 1, outcomes  # exactly one of them wins
        listed = await client.plans.list_plans(pb.ListPlansRequest(shop_id=s)).first_page()
        if ok[0]:
            assert [p.display_name for p in listed.plans] == [f"new {round_}"]
        else:
            assert list(listed.plans) == []


async def test_concurrent_retries_of_update_and_delete_replay(client: AsyncCustopsClient) -> None:
    s = shop()
    plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=birthday_plan()))
    ).plan
    update = pb.UpdatePlanRequest(
        shop_id=s,
        plan=pb.Plan(plan_id=plan.plan_id, etag=plan.etag, display_name="once"),
        update_mask=FieldMask(paths=["display_name"]),
        request_id="upd-1",
    )
    results = await asyncio.gather(*(client.plans.update_plan(update) for _ in range(4)))
    assert {r.plan.etag for r in results} == {results[0].plan.etag}
    assert all(r.plan.display_name == "once" for r in results)

    delete = pb.DeletePlanRequest(shop_id=s, plan_id=plan.plan_id, request_id="del-1")
    await asyncio.gather(*(client.plans.delete_plan(delete) for _ in range(4)))
    await client.plans.delete_plan(delete)  # a late retry is answered like the first
    with pytest.raises(CustopsError) as err:
        await client.plans.get_plan(pb.GetPlanRequest(shop_id=s, plan_id=plan.plan_id))
    assert err.value.code is grpc.StatusCode.NOT_FOUND


async def test_list_filters_by_front_office_and_name(client: AsyncCustopsClient) -> None:
    s = shop()
    for name, office in (
        ("Spring 100% sale", pb.FRONT_OFFICE_RETAIL),
        ("spring_members", pb.FRONT_OFFICE_MICRO_MALL),
        ("Autumn", pb.FRONT_OFFICE_RETAIL),
    ):
        plan = birthday_plan(name)
        plan.front_office = office
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=plan))

    async def names(**filters: Any) -> list[str]:
        page = await client.plans.list_plans(pb.ListPlansRequest(shop_id=s, **filters)).first_page()
        return sorted(p.display_name for p in page.plans)

    assert await names(front_office=pb.FRONT_OFFICE_RETAIL) == ["Autumn", "Spring 100% sale"]
    assert await names(display_name_contains="SPRING") == ["Spring 100% sale", "spring_members"]
    # LIKE wildcards are plain characters here.
    assert await names(display_name_contains="100%") == ["Spring 100% sale"]
    assert await names(display_name_contains="g_m") == ["spring_members"]


async def test_update_of_one_limit_keeps_the_others(client: AsyncCustopsClient) -> None:
    s = shop()
    plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=s, plan=birthday_plan()))
    ).plan
    changed = (
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=s,
                plan=pb.Plan(plan_id=plan.plan_id, limits=pb.PlanLimits(total_budget=99)),
                update_mask=FieldMask(paths=["limits.total_budget"]),
            )
        )
    ).plan
    assert changed.limits.total_budget == 99
    assert changed.limits.quiet_hours == plan.limits.quiet_hours
    assert changed.limits.frequency == plan.limits.frequency
    assert changed.limits.rate_override == plan.limits.rate_override
