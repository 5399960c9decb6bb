"""Bad input to every implemented RPC: INVALID_ARGUMENT naming each bad
field, never INTERNAL; the server stays up."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.audience.v1 import audience_pb2
from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from tests.sdk_names import sdk_method

DEEP = audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=["V1"]))
for _ in range(12):
    DEEP = audience_pb2.AudienceRule(negate=DEEP)

CASES = [
    ("CreatePlan", pb.CreatePlanRequest(shop_id="s1"), {"plan"}),
    (
        "CreatePlan",
        pb.CreatePlanRequest(
            shop_id="bad shop!",
            plan=pb.Plan(
                display_name="",
                time_zone="Mars/Olympus",
                audience=audience_pb2.AudienceRule(
                    browsed_not_bought=audience_pb2.BrowsedNotBoughtCondition(within_days=0)
                ),
                actions=[
                    pb.Action(),
                    pb.Action(
                        grant_benefit=pb.GrantBenefitAction(
                            benefits=[pb.BenefitGrant(template_id="", quantity=0)]
                        )
                    ),
                ],
                limits=pb.PlanLimits(
                    total_budget=-1, quiet_hours=pb.QuietHours(start="25:00", end="8")
                ),
            ),
        ),
        {
            "shop_id",
            "plan.display_name",
            "plan.time_zone",
            "plan.audience.browsed_not_bought.within_days",
            "plan.actions[0]",
            "plan.actions[1].grant_benefit.benefits[0].template_id",
            "plan.actions[1].grant_benefit.benefits[0].kind",
            "plan.actions[1].grant_benefit.benefits[0].quantity",
            "plan.limits.total_budget",
            "plan.limits.quiet_hours.start",
            "plan.limits.quiet_hours.end",
        },
    ),
    (
        "CreatePlan",
        pb.CreatePlanRequest(shop_id="s1", plan=pb.Plan(display_name="x", audience=DEEP)),
        {"plan.audience.negate.negate.negate.negate.negate.negate.negate.negate"},
    ),
    (
        "CreatePlan",
        pb.CreatePlanRequest(
            shop_id="s1",
            plan=pb.Plan(display_name="x", business_product=99),  # type: ignore[arg-type]
        ),
        {"plan.business_product"},
    ),
    (
        "CreatePlan",
        pb.CreatePlanRequest(
            shop_id="s1", plan=pb.Plan(display_name="x"), request_id="not a valid id"
        ),
        {"request_id"},
    ),
    ("GetPlan", pb.GetPlanRequest(), {"shop_id", "plan_id"}),
    ("ListPlans", pb.ListPlansRequest(shop_id="s1", page_size=-1), {"page_size"}),
    ("ListPlans", pb.ListPlansRequest(shop_id="s1", page_token="garbage"), {"page_token"}),
    (
        "ListPlans",
        pb.ListPlansRequest(shop_id="s1", state=42),  # type: ignore[arg-type]
        {"state"},
    ),
    (
        "UpdatePlan",
        pb.UpdatePlanRequest(shop_id="s1", plan=pb.Plan()),
        {"plan.plan_id", "update_mask"},
    ),
    ("DeletePlan", pb.DeletePlanRequest(shop_id=""), {"shop_id", "plan_id"}),
    (
        "ExplainTermExpression",
        pb.ExplainTermExpressionRequest(expression=" ", time_zone="Mars/Base", count=-1),
        {"shop_id", "expression", "time_zone", "count"},
    ),
    (
        "CreatePlan",
        pb.CreatePlanRequest(
            shop_id="s1",
            plan=pb.Plan(
                display_name="x",
                time=pb.PlanTime(execution="* * 8-25 * * ? 31", term="* * * * * * * 99"),
            ),
        ),
        {"plan.time.execution.hour", "plan.time.term.type"},
    ),
    (
        "PreviewPlan",
        pb.PreviewPlanRequest(shop_id="s1", fire_time_count=-1),
        {"plan_id", "fire_time_count"},
    ),
    (
        "PreviewPlan",
        pb.PreviewPlanRequest(
            shop_id="s1",
            plan=pb.Plan(
                display_name="x",
                actions=[
                    pb.Action(
                        grant_benefit=pb.GrantBenefitAction(
                            benefits=[
                                pb.BenefitGrant(
                                    template_id="t", kind=benefit_pb2.BENEFIT_KIND_GIFT, quantity=-5
                                )
                            ]
                        )
                    )
                ],
            ),
            parts=[pb.PREVIEW_PART_AUDIENCE_ESTIMATE],
        ),
        {"plan.actions[0].grant_benefit.benefits[0].quantity"},
    ),
]


def _explain_from(seconds: int, nanos: int) -> pb.ExplainTermExpressionRequest:
    request = pb.ExplainTermExpressionRequest(expression="0 0 9 * * ? * 30")
    request.from_time.seconds, request.from_time.nanos = seconds, nanos
    return request


# Timestamps out of their type's range (issue 22, item 3): INTERNAL before.
CASES += [
    ("ExplainTermExpression", _explain_from(0, 1_000_000_000), {"from_time"}),
    ("ExplainTermExpression", _explain_from(0, -1), {"from_time"}),
    ("ExplainTermExpression", _explain_from(253_402_300_800, 0), {"from_time"}),
    ("ExplainTermExpression", _explain_from(-62_135_596_801, 0), {"from_time"}),
]


@pytest.mark.parametrize(("method", "request_message", "fields"), CASES)
async def test_bad_input_names_every_field(
    client: AsyncCustopsClient, method: str, request_message: object, fields: set[str]
) -> None:
    with pytest.raises(CustopsError) as err:
        await sdk_method(client.plans, method)(request_message)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT, str(err.value)
    assert {v.field for v in err.value.field_violations} == fields
    assert all(v.description for v in err.value.field_violations)
    assert err.value.request_id
    # The server is still up and serving.
    await client.plans.list_plans(pb.ListPlansRequest(shop_id="s1")).first_page()


async def test_update_mask_outside_the_plan_is_refused(client: AsyncCustopsClient) -> None:
    created = await client.plans.create_plan(
        pb.CreatePlanRequest(shop_id="s1", plan=pb.Plan(display_name="x"))
    )
    with pytest.raises(CustopsError) as err:
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id="s1",
                plan=pb.Plan(plan_id=created.plan.plan_id, time_zone="Nowhere/City"),
                update_mask=FieldMask(paths=["time_zone"]),
            )
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["plan.time_zone"]


RUN = "r" + "0" * 20


@pytest.mark.parametrize(
    ("service", "method", "request_message"),
    [
        ("plans", "GetPlanStatistics", pb.GetPlanStatisticsRequest(shop_id="s1", plan_id="p")),
        ("plans", "ListPlanRuns", pb.ListPlanRunsRequest(shop_id="s1", plan_id="p")),
        ("plans", "GetPlanRun", pb.GetPlanRunRequest(shop_id="s1", plan_id="p", run_id=RUN)),
        ("plans", "CancelPlanRun", pb.CancelPlanRunRequest(shop_id="s1", plan_id="p", run_id=RUN)),
        (
            "plans",
            "RetryFailedItems",
            pb.RetryFailedItemsRequest(shop_id="s1", plan_id="p", run_id=RUN),
        ),
        ("plans", "TriggerPlanRun", pb.TriggerPlanRunRequest(shop_id="s1", plan_id="p")),
        (
            "plans",
            "RecoverPlanRun",
            pb.RecoverPlanRunRequest(shop_id="s1", plan_id="p", run_id=RUN),
        ),
    ],
)
async def test_runs_of_an_unknown_plan_are_not_found(
    client: AsyncCustopsClient, service: str, method: str, request_message: object
) -> None:
    with pytest.raises(CustopsError) as err:
        await sdk_method(getattr(client, service), method)(request_message)
    assert err.value.code is grpc.StatusCode.NOT_FOUND


async def test_a_recovery_names_its_run_and_a_short_reason(client: AsyncCustopsClient) -> None:
    with pytest.raises(CustopsError) as err:
        await client.plans.recover_plan_run(
            pb.RecoverPlanRunRequest(shop_id="s1", plan_id="p", run_id="last", reason="x" * 201)
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["run_id", "reason"]
