"""The benefit stand-in through gRPC: exactly-once grants, stock, the life of
an instance, capacity and faults."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.benefit.v1 import benefit_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2 as admin
from tests.integration.stubs_fixture import SteppingClock, StubClients


def grant(
    key: str, member: str = "m00000001", template: str = "coupon-10-off-100", n: int = 1
) -> pb.GrantItem:
    return pb.GrantItem(
        idempotency_key=key, member_id=member, template_id=template, quantity=n, source="plans/p1"
    )


async def grant_one(s: StubClients, item: pb.GrantItem, shop: str = "s1") -> pb.GrantResult:
    reply = await s.benefit.BatchGrantBenefits(
        pb.BatchGrantBenefitsRequest(shop_id=shop, items=[item])
    )
    result: pb.GrantResult = reply.results[0]
    return result


async def instances(s: StubClients, member: str, shop: str = "s1") -> list[pb.BenefitInstance]:
    reply = await s.benefit.ListBenefitInstances(
        pb.ListBenefitInstancesRequest(shop_id=shop, member_id=member, page_size=500)
    )
    return list(reply.instances)


async def test_fifty_concurrent_duplicates_grant_exactly_once(stubs: StubClients) -> None:
    item = grant("run-1/m00000001/a0")
    results = await asyncio.gather(*(grant_one(stubs, item) for _ in range(50)))
    statuses = sorted(pb.ItemStatus.Name(r.status) for r in results)
    assert statuses == ["ITEM_STATUS_DUPLICATE"] * 49 + ["ITEM_STATUS_SUCCEEDED"]
    first = next(r for r in results if r.status == pb.ITEM_STATUS_SUCCEEDED)
    assert all(list(r.instances) == list(first.instances) for r in results)
    assert len(await instances(stubs, "m00000001")) == 1
    assert stubs.stubs.benefits.grants_by_key == {("s1", "run-1/m00000001/a0"): 1}
    counters = (
        await stubs.admin.GetStubCounters(
            admin.GetStubCountersRequest(system=admin.STUB_SYSTEM_BENEFIT)
        )
    ).counters
    assert (counters.succeeded, counters.duplicates) == (1, 49)


async def test_a_key_reused_for_another_grant_fails_that_item_only(stubs: StubClients) -> None:
    reply = await stubs.benefit.BatchGrantBenefits(
        pb.BatchGrantBenefitsRequest(
            shop_id="s1",
            items=[grant("k1"), grant("k1", member="m00000002"), grant("k2", template="nope")],
        )
    )
    assert [r.status for r in reply.results] == [
        pb.ITEM_STATUS_SUCCEEDED,
        pb.ITEM_STATUS_FAILED,
        pb.ITEM_STATUS_FAILED,
    ]
    assert [r.failure.reason for r in reply.results[1:]] == [
        "IDEMPOTENCY_KEY_REUSED",
        "TEMPLATE_NOT_FOUND",
    ]


async def test_stock_never_goes_negative_under_concurrency(stubs: StubClients) -> None:
    await stubs.benefit.CreateBenefitTemplate(
        pb.CreateBenefitTemplateRequest(
            shop_id="s1",
            template=pb.BenefitTemplate(
                template_id="vip-gift",
                kind=pb.BENEFIT_KIND_GIFT,
                display_name="VIP gift",
                validity_days=30,
                inventory=10,
            ),
        )
    )
    results = await asyncio.gather(
        *(
            grant_one(stubs, grant(f"g{i}", member=f"m{i:08d}", template="vip-gift"))
            for i in range(40)
        )
    )
    granted = [r for r in results if r.status == pb.ITEM_STATUS_SUCCEEDED]
    assert len(granted) == 10
    assert {r.failure.reason for r in results if r.status == pb.ITEM_STATUS_FAILED} == {
        "OUT_OF_STOCK"
    }
    assert all(not r.failure.retryable for r in results if r.status == pb.ITEM_STATUS_FAILED)
    stock = await stubs.benefit.BatchGetInventory(
        pb.BatchGetInventoryRequest(shop_id="s1", template_ids=["vip-gift"])
    )
    assert stock.inventories[0].available == 0


async def test_packages_periodic_benefits_and_versions(stubs: StubClients) -> None:
    pack = await grant_one(stubs, grant("p1", template="micro-mall-birthday-pack"))
    assert sorted(i.template_id for i in pack.instances) == [
        "coupon-10-off-100",
        "free-shipping",
        "points-100",
        "points-100",
    ]
    monthly = await grant_one(stubs, grant("c1", template="coupon-monthly-x3"))
    starts = [i.valid_from.ToDatetime() for i in monthly.instances]
    assert [i.period_index for i in monthly.instances] == [0, 1, 2]
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(days=30)] * 2

    await stubs.benefit.CreateBenefitTemplate(
        pb.CreateBenefitTemplateRequest(
            shop_id="s1",
            template=pb.BenefitTemplate(
                template_id="my-pack",
                kind=pb.BENEFIT_KIND_PACKAGE,
                display_name="My pack",
                components=[pb.PackageComponent(template_id="points-100", quantity=1)],
                inventory=100,
            ),
        )
    )
    v1 = await grant_one(stubs, grant("v1", template="my-pack"))
    changed = await stubs.benefit.UpdateBenefitTemplate(
        pb.UpdateBenefitTemplateRequest(
            shop_id="s1",
            template=pb.BenefitTemplate(
                template_id="my-pack",
                components=[pb.PackageComponent(template_id="growth-50", quantity=1)],
            ),
            update_mask=FieldMask(paths=["components"]),
        )
    )
    assert changed.template.version == 2
    v2 = await grant_one(stubs, grant("v2", template="my-pack"))
    assert [i.template_id for i in v1.instances] == ["points-100"]
    assert [i.template_id for i in v2.instances] == ["growth-50"]
    old = await stubs.benefit.GetBenefitTemplate(
        pb.GetBenefitTemplateRequest(shop_id="s1", template_id="my-pack", version=1)
    )
    assert old.template.components[0].template_id == "points-100"


async def test_the_life_of_an_instance(stubs: StubClients, clock: SteppingClock) -> None:
    (coupon,) = (await grant_one(stubs, grant("life"))).instances
    use = pb.MarkBenefitUsedRequest(
        shop_id="s1", instance_id=coupon.instance_id, order_id="o1", idempotency_key="use-1"
    )
    used = await stubs.benefit.MarkBenefitUsed(use)
    assert used.instance.state == pb.BENEFIT_STATE_USED and not used.duplicate
    assert (await stubs.benefit.MarkBenefitUsed(use)).duplicate
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.benefit.MarkBenefitUsed(
            pb.MarkBenefitUsedRequest(
                shop_id="s1", instance_id=coupon.instance_id, order_id="o2", idempotency_key="use-2"
            )
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    back = pb.ReplenishBenefitRequest(
        shop_id="s1", instance_id=coupon.instance_id, order_id="o1", idempotency_key="refund-1"
    )
    replenished = await stubs.benefit.ReplenishBenefit(back)
    assert replenished.instance.state == pb.BENEFIT_STATE_UNUSED
    assert (await stubs.benefit.ReplenishBenefit(back)).duplicate

    taken = await stubs.benefit.BatchRecoverBenefits(
        pb.BatchRecoverBenefitsRequest(
            shop_id="s1",
            items=[pb.RecoverItem(idempotency_key="r1", instance_id=coupon.instance_id)],
        )
    )
    assert taken.results[0].instance.state == pb.BENEFIT_STATE_RECOVERED

    # Another coupon expires after its validity (30 days) unused, and then
    # can be neither used nor taken back.
    (later,) = (await grant_one(stubs, grant("expires"))).instances
    clock.current += timedelta(days=31)
    (shown,) = [
        i for i in await instances(stubs, "m00000001") if i.instance_id == later.instance_id
    ]
    assert shown.state == pb.BENEFIT_STATE_EXPIRED
    again = await stubs.benefit.BatchRecoverBenefits(
        pb.BatchRecoverBenefitsRequest(
            shop_id="s1",
            items=[pb.RecoverItem(idempotency_key="r2", instance_id=later.instance_id)],
        )
    )
    assert again.results[0].failure.reason == "NOT_UNUSED"


async def test_shops_do_not_see_each_others_instances(stubs: StubClients) -> None:
    (coupon,) = (await grant_one(stubs, grant("mine"))).instances
    assert await instances(stubs, "m00000001", shop="s2") == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.benefit.MarkBenefitUsed(
            pb.MarkBenefitUsedRequest(
                shop_id="s2", instance_id=coupon.instance_id, order_id="o", idempotency_key="x"
            )
        )
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


async def _faults(stubs: StubClients, **values: Any) -> None:
    await stubs.admin.UpdateStubSettings(
        admin.UpdateStubSettingsRequest(
            settings=admin.StubSettings(
                system=admin.STUB_SYSTEM_BENEFIT, faults=admin.Faults(**values)
            ),
            update_mask=FieldMask(paths=[f"faults.{k}" for k in values]),
        )
    )


async def test_a_lost_response_was_applied_and_a_retry_returns_it(stubs: StubClients) -> None:
    await _faults(stubs, lost_response_rate=1.0)
    item = grant("lost-1", member="m00000009")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await grant_one(stubs, item)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len(await instances(stubs, "m00000009")) == 1  # applied all the same
    await _faults(stubs, lost_response_rate=0.0)
    retry = await grant_one(stubs, item)
    assert retry.status == pb.ITEM_STATUS_DUPLICATE
    assert len(await instances(stubs, "m00000009")) == 1


async def test_injected_errors_apply_nothing(stubs: StubClients) -> None:
    await _faults(stubs, error_rate=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await grant_one(stubs, grant("err-1", member="m00000008"))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    await _faults(stubs, error_rate=0.0)
    assert await instances(stubs, "m00000008") == []


async def test_capacity_counts_items_not_calls(stubs: StubClients) -> None:
    await stubs.admin.UpdateStubSettings(
        admin.UpdateStubSettingsRequest(
            settings=admin.StubSettings(
                system=admin.STUB_SYSTEM_BENEFIT,
                capacity=admin.Capacity(items_per_second=1, burst=5000),
            ),
            update_mask=FieldMask(paths=["capacity.items_per_second", "capacity.burst"]),
        )
    )
    batch = [grant(f"cap-{i}", member=f"m{i:08d}", template="points-100") for i in range(5000)]
    first = await stubs.benefit.BatchGrantBenefits(
        pb.BatchGrantBenefitsRequest(shop_id="s1", items=batch)
    )
    assert all(
        r.status == pb.ITEM_STATUS_SUCCEEDED for r in first.results
    )  # the burst fits one batch
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await grant_one(stubs, grant("cap-more", template="points-100"))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
