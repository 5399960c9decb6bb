"""The platform with its embedded stand-ins: a preview asks the audience stand-in."""

from __future__ import annotations

from pathlib import Path

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.integration.conftest import settings


async def test_preview_estimates_through_the_embedded_audience_stand_in(tmp_path: Path) -> None:
    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/e.db", stubs_population=2000))
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:

            def preview(levels: list[str]) -> pb.PreviewPlanRequest:
                return pb.PreviewPlanRequest(
                    shop_id="s1",
                    plan=pb.Plan(
                        display_name="gold",
                        audience=audience_pb2.AudienceRule(
                            levels=audience_pb2.LevelCondition(levels=levels)
                        ),
                    ),
                    parts=[pb.PREVIEW_PART_AUDIENCE_ESTIMATE],
                )

            gold = (await client.plans.preview_plan(preview(["V4", "V5"]))).audience_estimate
            everyone = (
                await client.plans.preview_plan(preview(["V0", "V1", "V2", "V3", "V4", "V5"]))
            ).audience_estimate
    finally:
        await platform.stop(grace=1)
    assert gold.exact and everyone.exact
    assert everyone.count == 2000
    assert 0 < gold.count < everyone.count


async def test_preview_checks_inventory_and_warns(tmp_path: Path) -> None:
    import grpc

    from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc

    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/e.db", stubs_population=2000))
    await platform.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel:
            await benefit_pb2_grpc.BenefitServiceStub(channel).CreateBenefitTemplate(
                benefit_pb2.CreateBenefitTemplateRequest(
                    shop_id="s1",
                    template=benefit_pb2.BenefitTemplate(
                        template_id="scarce", kind=benefit_pb2.BENEFIT_KIND_GIFT, inventory=5
                    ),
                )
            )
        plan = pb.Plan(
            display_name="gold gifts",
            audience=audience_pb2.AudienceRule(
                levels=audience_pb2.LevelCondition(levels=["V4", "V5"])
            ),
            time=pb.PlanTime(execution="0 0 10 * * * 2020 31"),  # never again
            actions=[
                pb.Action(
                    grant_benefit=pb.GrantBenefitAction(
                        benefits=[
                            pb.BenefitGrant(
                                template_id="coupon-10-off-100",
                                kind=benefit_pb2.BENEFIT_KIND_COUPON,
                                quantity=2,
                            ),
                            pb.BenefitGrant(
                                template_id="scarce", kind=benefit_pb2.BENEFIT_KIND_GIFT, quantity=1
                            ),
                        ]
                    )
                )
            ],
            limits=pb.PlanLimits(total_budget=30),
        )
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            seen = await client.plans.preview_plan(pb.PreviewPlanRequest(shop_id="s1", plan=plan))
    finally:
        await platform.stop(grace=1)
    members = seen.audience_estimate.count
    assert members > 10
    checks = {c.template_id: c for c in seen.inventory_checks}
    assert checks["coupon-10-off-100"].required == 2 * members
    assert checks["coupon-10-off-100"].sufficient
    assert (checks["scarce"].required, checks["scarce"].available) == (members, 5)
    assert not checks["scarce"].sufficient
    assert {w.reason for w in seen.warnings} == {
        "INVENTORY_SHORT",
        "BUDGET_BELOW_AUDIENCE",
        "NO_FIRE_TIMES",
    }
    assert list(seen.next_fire_times) == []


async def test_ending_a_plan_takes_back_its_unused_benefits(tmp_path: Path) -> None:
    import grpc

    from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
    from tests.integration.test_plans_api import birthday_plan

    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/e.db", stubs_population=2000))
    await platform.start()
    try:
        async with (
            AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel,
        ):
            draft = birthday_plan()
            draft.time.term = ""
            plan = (
                await client.plans.create_plan(pb.CreatePlanRequest(shop_id="s1", plan=draft))
            ).plan
            plan = (
                await client.plans.publish_plan(
                    pb.PublishPlanRequest(shop_id="s1", plan_id=plan.plan_id)
                )
            ).plan
            # What a run would have granted (runs come with the execution engine).
            benefits = benefit_pb2_grpc.BenefitServiceStub(channel)
            granted = await benefits.BatchGrantBenefits(
                benefit_pb2.BatchGrantBenefitsRequest(
                    shop_id="s1",
                    items=[
                        benefit_pb2.GrantItem(
                            idempotency_key=f"run-1/m{i:08d}",
                            member_id=f"m{i:08d}",
                            template_id="coupon-10-off-100",
                            quantity=1,
                            source=f"plans/{plan.plan_id}",
                        )
                        for i in range(3)
                    ],
                )
            )
            used = granted.results[0].instances[0]
            await benefits.MarkBenefitUsed(
                benefit_pb2.MarkBenefitUsedRequest(
                    shop_id="s1", instance_id=used.instance_id, order_id="o1", idempotency_key="u"
                )
            )
            end = pb.EndPlanRequest(
                shop_id="s1",
                plan_id=plan.plan_id,
                recover_unused_benefits=True,
                reason="mistake",
                request_id="end-once",
            )
            ended = await client.plans.end_plan(end)
            # The same request again: the first answer, count included.
            replayed = await client.plans.end_plan(end)
            left = await benefits.ListBenefitInstances(
                benefit_pb2.ListBenefitInstancesRequest(
                    shop_id="s1", source=f"plans/{plan.plan_id}"
                )
            )
    finally:
        await platform.stop(grace=1)
    assert ended.plan.state == pb.PLAN_STATE_ENDED
    assert ended.recovered_count == 2
    assert replayed == ended
    states = sorted(benefit_pb2.BenefitState.Name(i.state) for i in left.instances)
    assert states == ["BENEFIT_STATE_RECOVERED", "BENEFIT_STATE_RECOVERED", "BENEFIT_STATE_USED"]
