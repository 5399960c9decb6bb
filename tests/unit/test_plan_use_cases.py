"""The plan use cases' rules over fakes of their ports: publishing checks
the benefit platform and the shop's approval threshold first and changes
nothing when either refuses, a stale etag changes nothing, and a request
id replays its first answer (the integration tests run them over gRPC,
the database and the stand-ins)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import audience as a
from domain import lifecycle
from domain import plan as d
from domain.downstream_ports import TemplateInfo
from domain.errors import Aborted, FailedPrecondition
from domain.ports import RequestKey
from domain.shop_policy import ShopPolicy
from tests.unit.fakes import Clock, FakeAudience, FakeBenefitCatalog, Store, plan_use_cases

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
POINTS = TemplateInfo("points-100", d.BenefitKind.POINTS, retired=False)


def spec(template: str = "points-100", kind: d.BenefitKind = d.BenefitKind.POINTS) -> d.PlanSpec:
    return d.PlanSpec(
        display_name="double points",
        product_id="birthday",
        front_office=d.FrontOffice.MICRO_MALL,
        time_zone="UTC",
        audience=a.Levels(("V1",)),
        time=d.PlanTime(execution="0 0 10 * * ? * 30"),
        actions=(d.GrantBenefits((d.BenefitGrant(template, kind, 1),)),),
    )


def key(request_id: str) -> RequestKey:
    return RequestKey("PublishPlan", request_id, "fingerprint")


async def test_a_draft_publishes_and_waits_for_its_first_fire() -> None:
    store = Store()
    plans = plan_use_cases(store, Clock(NOW), benefits=FakeBenefitCatalog({"points-100": POINTS}))
    draft = await plans.create("s1", spec(), "ann", None)
    published = await plans.publish("s1", draft.plan_id, draft.etag, "ann", None)
    assert published.state is d.PlanState.ACTIVE
    assert published.next_fire_time == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert store.plans["s1", draft.plan_id] == published


@pytest.mark.parametrize(
    ("template", "kind", "why"),
    [
        ("no-such-template", d.BenefitKind.POINTS, "has no template"),
        ("points-100", d.BenefitKind.COUPON, "points"),  # the template grants points
    ],
)
async def test_a_grant_the_benefit_platform_cannot_give_keeps_the_draft_a_draft(
    template: str, kind: d.BenefitKind, why: str
) -> None:
    store = Store()
    plans = plan_use_cases(store, Clock(NOW), benefits=FakeBenefitCatalog({"points-100": POINTS}))
    draft = await plans.create("s1", spec(template, kind), "ann", None)
    with pytest.raises(FailedPrecondition) as refused:
        await plans.publish("s1", draft.plan_id, draft.etag, "ann", None)
    assert refused.value.reason == "BENEFIT_TEMPLATE_UNUSABLE"
    assert why in refused.value.violations[0].description
    assert store.plans["s1", draft.plan_id].state is d.PlanState.DRAFT


async def test_a_plan_reaching_more_members_than_the_threshold_waits_for_an_approver() -> None:
    store = Store(policies={"s1": ShopPolicy("s1", approval_threshold=500)})
    plans = plan_use_cases(store, Clock(NOW), audience=FakeAudience(size=501))
    draft = await plans.create("s1", spec(), "ann", None)
    waiting = await plans.publish("s1", draft.plan_id, draft.etag, "ann", None)
    assert waiting.state is d.PlanState.AWAITING_APPROVAL
    assert waiting.next_check_time is None  # nothing fires before an approval
    approved = await plans.approve("s1", draft.plan_id, waiting.etag, "bob", None)
    assert approved.state is d.PlanState.ACTIVE and approved.next_check_time is not None


async def test_a_stale_etag_changes_nothing() -> None:
    store = Store()
    plans = plan_use_cases(store, Clock(NOW))
    draft = await plans.create("s1", spec(), "ann", None)
    await plans.publish("s1", draft.plan_id, draft.etag, "ann", None)
    with pytest.raises(Aborted):  # the etag read before the publish
        await plans.publish("s1", draft.plan_id, draft.etag, "ann", None)


async def test_a_replayed_request_id_answers_the_first_answer_and_changes_nothing() -> None:
    store = Store()
    clock = Clock(NOW)
    plans = plan_use_cases(store, clock)
    draft = await plans.create("s1", spec(), "ann", None)
    first = await plans.publish("s1", draft.plan_id, draft.etag, "ann", key("once"))
    paused = await plans.transition("s1", draft.plan_id, first.etag, lifecycle.pause, "ann", None)
    again = await plans.publish("s1", draft.plan_id, draft.etag, "ann", key("once"))
    assert again == first  # not a second publish, not an etag error
    assert store.plans["s1", draft.plan_id] == paused
