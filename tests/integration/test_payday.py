"""The payday product (issue 19): a template file plus one registered time
calculator (`@payday`), end to end through gRPC on the real scheduler with a
clock the test moves — preview, publish, a run on the right day including a
10th that falls on a weekend, and the member view."""

from __future__ import annotations

from datetime import UTC, date

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.client import CustopsError
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from tests.integration.test_plan_time import _tick, _view
from tests.integration.test_run_rules import TOP, Ops, at, levels, manual

__all__ = ["manual"]  # the fixture, imported for pytest

PAYDAYS = [at(date(2026, 12, 10)), at(date(2027, 1, 8)), at(date(2027, 2, 10))]  # 09:00


async def test_payday_from_its_template_runs_on_payday(manual: Ops) -> None:
    # What the calculator's text means, as a merchant asks.
    explained = await manual.client.plans.explain_term_expression(
        pb.ExplainTermExpressionRequest(shop_id=manual.shop, expression="@payday 09:00", count=3)
    )
    assert explained.valid and explained.type_name == "payday" and explained.type_code == 0
    assert explained.normalized == "@payday 10 09:00"
    assert [t.ToDatetime(UTC) for t in explained.next_fire_times] == PAYDAYS
    # The product is a template file; its plan, from the template.
    listed = await manual.client.plans.list_plan_templates(
        pb.ListPlanTemplatesRequest(shop_id=manual.shop, product_id="payday")
    ).first_page()
    (template,) = listed.templates
    assert list(template.allowed.execution) == ["payday"]
    draft = (
        await manual.client.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id=manual.shop,
                template_id="payday",
                overrides=pb.Plan(audience=levels(*TOP)),
                override_mask=FieldMask(paths=["audience"]),
            )
        )
    ).plan
    assert draft.product_id == "payday" and draft.time.execution == "@payday 09:00"
    preview = await manual.client.plans.preview_plan(
        pb.PreviewPlanRequest(shop_id=manual.shop, plan_id=draft.plan_id, fire_time_count=3)
    )
    assert [t.ToDatetime(UTC) for t in preview.next_fire_times] == PAYDAYS
    members = manual.members(lambda m: m.level in TOP)
    assert preview.audience_estimate.count == len(members)
    plan = (
        await manual.client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=manual.shop, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    assert plan.next_fire_time.ToDatetime(UTC) == PAYDAYS[0]
    member = sorted(members)[0]
    # Each day from 7 January to 11 January: a run on Friday the 8th only
    # (the 10th is a Sunday), and the member view shows it that day.
    await _tick(manual, at(date(2026, 12, 10), 9, 0, 10))
    shown: dict[int, bool] = {}
    for day in range(7, 12):
        await _tick(manual, at(date(2027, 1, day), 9, 0, 10))
        view = await _view(manual, member, pb.FRONT_OFFICE_MICRO_MALL)
        shown[day] = any(p.plan_id == plan.plan_id for p in view.plans)
        if day == 7:
            (upcoming,) = [p for p in view.upcoming_plans if p.plan_id == plan.plan_id]
            assert upcoming.window_start_time.ToDatetime(UTC) == at(date(2027, 1, 8), 0)
            assert upcoming.headline == "Payday: 10 off 100"  # its name leads with it already
    assert shown == {7: False, 8: True, 9: False, 10: False, 11: False}
    runs = await manual.runs(plan)
    assert sorted(r.fire_time.ToDatetime(UTC) for r in runs) == PAYDAYS[:2]
    assert all(r.state == pb.RUN_STATE_SUCCEEDED for r in runs)
    assert all(r.progress.granted == len(members) for r in runs)
    # The member holds a coupon from each payday.
    benefits = await manual.client.scenario.list_member_benefits(
        spb.ListMemberBenefitsRequest(shop_id=manual.shop, member_id=member, plan_id=plan.plan_id)
    ).first_page()
    assert len(benefits.benefits) == 2
    assert (await manual.plan(plan)).next_fire_time.ToDatetime(UTC) == PAYDAYS[2]


async def test_another_product_cannot_use_the_payday_calculator(manual: Ops) -> None:
    """A template allows its calculators by name: member day's does not
    allow payday."""
    draft = (
        await manual.client.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(shop_id=manual.shop, template_id="member_day")
        )
    ).plan
    with pytest.raises(CustopsError) as err:
        await manual.client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=manual.shop,
                plan=pb.Plan(plan_id=draft.plan_id, time=pb.PlanTime(execution="@payday")),
                update_mask=FieldMask(paths=["time.execution"]),
            )
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = err.value.field_violations
    assert violation.field == "plan.time.execution"
    assert "payday is not allowed by template member_day" in violation.description
