"""Publishing checks a plan's grants against the benefit platform (issue 19,
item 3): a template that does not exist, is of another kind or is retired
is refused with a violation per grant, and a benefit platform that cannot
be reached is UNAVAILABLE with a retry hint; either way the plan stays a
draft. Before, such a plan was published and every member of every run
failed."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from server.app import Platform
from tests.integration.test_plans_api import birthday_plan

GRANT = "plan.actions[{i}].grant_benefit.benefits[{j}]"


def _shop() -> str:
    return f"pub-{uuid.uuid4().hex[:8]}"


def _granting(*grants: tuple[str, int]) -> pb.Plan:
    plan = birthday_plan()
    plan.time.term = ""
    del plan.actions[0].grant_benefit.benefits[:]
    for template_id, kind in grants:
        plan.actions[0].grant_benefit.benefits.add(template_id=template_id, kind=kind, quantity=1)
    return plan


async def _refused(client: AsyncCustopsClient, shop: str, plan: pb.Plan) -> CustopsError:
    draft = (await client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop, plan=plan))).plan
    with pytest.raises(CustopsError) as err:
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=shop, plan_id=draft.plan_id, etag=draft.etag)
        )
    kept = await client.plans.get_plan(pb.GetPlanRequest(shop_id=shop, plan_id=draft.plan_id))
    assert kept.plan.state == pb.PLAN_STATE_DRAFT and kept.plan.etag == draft.etag  # unchanged
    return err.value


async def test_grants_the_benefit_platform_cannot_give_are_refused_one_by_one(
    platform: Platform, client: AsyncCustopsClient
) -> None:
    shop = _shop()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel:
        benefits = benefit_pb2_grpc.BenefitServiceStub(channel)
        await benefits.CreateBenefitTemplate(
            benefit_pb2.CreateBenefitTemplateRequest(
                shop_id=shop,
                template=benefit_pb2.BenefitTemplate(
                    template_id="old-gift", kind=benefit_pb2.BENEFIT_KIND_GIFT, unlimited=True
                ),
            )
        )
        await benefits.UpdateBenefitTemplate(
            benefit_pb2.UpdateBenefitTemplateRequest(
                shop_id=shop,
                template=benefit_pb2.BenefitTemplate(
                    template_id="old-gift", state=benefit_pb2.BENEFIT_TEMPLATE_STATE_RETIRED
                ),
                update_mask=FieldMask(paths=["state"]),
            )
        )
        # The stand-in grants a retired template no more.
        granted = await benefits.BatchGrantBenefits(
            benefit_pb2.BatchGrantBenefitsRequest(
                shop_id=shop,
                items=[
                    benefit_pb2.GrantItem(
                        idempotency_key="k",
                        member_id="m00000001",
                        template_id="old-gift",
                        quantity=1,
                    )
                ],
            )
        )
        assert granted.results[0].failure.reason == "TEMPLATE_RETIRED"
    error = await _refused(
        client,
        shop,
        _granting(
            ("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON),  # fine
            ("no-such-template", benefit_pb2.BENEFIT_KIND_COUPON),
            ("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_DISCOUNT),  # it is a coupon
            ("old-gift", benefit_pb2.BENEFIT_KIND_GIFT),
        ),
    )
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "BENEFIT_TEMPLATE_UNUSABLE"
    violations = {v.field: v.description for v in error.field_violations}
    assert set(violations) == {
        GRANT.format(i=0, j=1) + ".template_id",
        GRANT.format(i=0, j=2) + ".kind",
        GRANT.format(i=0, j=3) + ".template_id",
    }
    assert "no template 'no-such-template'" in violations[GRANT.format(i=0, j=1) + ".template_id"]
    assert "is coupon, not discount" in violations[GRANT.format(i=0, j=2) + ".kind"]
    assert "retired" in violations[GRANT.format(i=0, j=3) + ".template_id"]
    # The same plan with the usable grant only is published.
    fine = _granting(("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON))
    draft = (await client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop, plan=fine))).plan
    published = await client.plans.publish_plan(
        pb.PublishPlanRequest(shop_id=shop, plan_id=draft.plan_id)
    )
    assert published.plan.state in (pb.PLAN_STATE_ACTIVE, pb.PLAN_STATE_SCHEDULED)


async def test_a_benefit_platform_out_of_reach_is_unavailable_with_a_retry_hint(
    platform: Platform, client: AsyncCustopsClient
) -> None:
    shop = _shop()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel:
        admin = stubadmin_pb2_grpc.StubAdminServiceStub(channel)

        async def error_rate(rate: float) -> None:
            await admin.UpdateStubSettings(
                stubadmin_pb2.UpdateStubSettingsRequest(
                    settings=stubadmin_pb2.StubSettings(
                        system=stubadmin_pb2.STUB_SYSTEM_BENEFIT,
                        faults=stubadmin_pb2.Faults(error_rate=rate),
                    ),
                    update_mask=FieldMask(paths=["faults.error_rate"]),
                )
            )

        await error_rate(1.0)
        try:
            error = await _refused(
                client, shop, _granting(("coupon-10-off-100", benefit_pb2.BENEFIT_KIND_COUPON))
            )
        finally:
            await error_rate(0.0)
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.retry_delay is not None and error.retry_delay > 0
