"""A plan's lifecycle through the server, on a clock the test controls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_plans_api import birthday_plan
from tests.sdk_names import sdk_method

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture
async def lc(database_url: str) -> AsyncIterator[AsyncCustopsClient]:
    platform = Platform(settings(database_url), clock=SteppingClock(NOW))
    await platform.start()
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
        yield client
    await platform.stop(grace=1)


async def draft(client: AsyncCustopsClient, shop: str = "s1", **time: str) -> pb.Plan:
    plan = birthday_plan()
    plan.time.term = "0-0 0-0 0-0 1-31 1-12 * 2026-2027 2"
    for name, value in time.items():
        setattr(plan.time, name, value)
    created: pb.Plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop, plan=plan))
    ).plan
    return created


async def step(client: AsyncCustopsClient, action: str, plan: pb.Plan, **extra: Any) -> pb.Plan:
    request = getattr(pb, f"{action}PlanRequest")(
        shop_id=plan.shop_id, plan_id=plan.plan_id, etag=plan.etag, **extra
    )
    reply = await sdk_method(client.plans, f"{action}Plan")(request)
    moved: pb.Plan = reply.plan
    return moved


async def test_publish_pause_resume_end(lc: AsyncCustopsClient) -> None:
    plan = await draft(lc)
    active = await step(lc, "Publish", plan)
    assert active.state == pb.PLAN_STATE_ACTIVE
    assert active.publish_time.ToDatetime(UTC) == NOW
    # Daily at 09:00 Shanghai: the next is tomorrow's (it is 10:00 now).
    assert active.next_fire_time.ToDatetime(UTC) == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert active.etag != plan.etag
    paused = await step(lc, "Pause", active)
    assert paused.state == pb.PLAN_STATE_PAUSED
    resumed = await step(lc, "Resume", paused)
    assert resumed.state == pb.PLAN_STATE_ACTIVE
    ended = await step(lc, "End", resumed, recover_unused_benefits=True, reason="season over")
    assert ended.state == pb.PLAN_STATE_ENDED and ended.end_time.ToDatetime(UTC) == NOW
    assert not ended.HasField("next_fire_time")
    got = await lc.plans.get_plan(pb.GetPlanRequest(shop_id="s1", plan_id=plan.plan_id))
    assert got.plan == ended


async def test_a_later_effective_time_schedules_the_plan(lc: AsyncCustopsClient) -> None:
    plan = await draft(lc, effective="0 0 0 10 * * * 3")  # ten days after publishing
    scheduled = await step(lc, "Publish", plan)
    assert scheduled.state == pb.PLAN_STATE_SCHEDULED
    assert scheduled.next_fire_time.ToDatetime(UTC) == datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    with pytest.raises(CustopsError) as err:
        await step(lc, "Pause", scheduled)
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert (await step(lc, "End", scheduled)).state == pb.PLAN_STATE_ENDED


async def _in_state(client: AsyncCustopsClient, state: str) -> pb.Plan:
    plan = await draft(
        client, effective="0 0 0 10 * * * 3" if state == "SCHEDULED" else "* * * * * * * 1"
    )
    path = {
        "DRAFT": [],
        "SCHEDULED": ["Publish"],
        "ACTIVE": ["Publish"],
        "PAUSED": ["Publish", "Pause"],
        "ENDED": ["Publish", "End"],
    }[state]
    for action in path:
        plan = await step(client, action, plan)
    assert pb.PlanState.Name(plan.state) == f"PLAN_STATE_{state}"
    return plan


ILLEGAL = [
    ("DRAFT", "Pause"), ("DRAFT", "Resume"), ("DRAFT", "End"),
    ("SCHEDULED", "Publish"), ("SCHEDULED", "Pause"), ("SCHEDULED", "Resume"),
    ("ACTIVE", "Publish"), ("ACTIVE", "Resume"),
    ("PAUSED", "Publish"), ("PAUSED", "Pause"),
    ("ENDED", "Publish"), ("ENDED", "Pause"), ("ENDED", "Resume"), ("ENDED", "End"),
]  # fmt: skip


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
async def test_every_illegal_transition_is_refused(
    lc: AsyncCustopsClient, state: str, action: str
) -> None:
    plan = await _in_state(lc, state)
    with pytest.raises(CustopsError) as err:
        await step(lc, action, plan)
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "ILLEGAL_TRANSITION"
    again = await lc.plans.get_plan(pb.GetPlanRequest(shop_id="s1", plan_id=plan.plan_id))
    assert again.plan.etag == plan.etag  # nothing changed


async def test_an_incomplete_draft_says_everything_it_lacks(lc: AsyncCustopsClient) -> None:
    bare = (
        await lc.plans.create_plan(
            pb.CreatePlanRequest(shop_id="s1", plan=pb.Plan(display_name="x"))
        )
    ).plan
    with pytest.raises(CustopsError) as err:
        await step(lc, "Publish", bare)
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "PLAN_INCOMPLETE"
    assert {v.field for v in err.value.field_violations} == {
        "plan.product_id",
        "plan.front_office",
        "plan.audience",
        "plan.time.execution",
        "plan.actions",
    }


async def test_a_term_that_is_over_cannot_be_published(lc: AsyncCustopsClient) -> None:
    plan = await draft(lc, term="0-0 0-0 0-0 1-2 1-1 * 2020-2020 2")
    with pytest.raises(CustopsError) as err:
        await step(lc, "Publish", plan)
    assert err.value.reason == "TERM_OVER"


async def _update(client: AsyncCustopsClient, plan_id: str, plan: pb.Plan, *paths: str) -> pb.Plan:
    plan.plan_id = plan_id
    reply = await client.plans.update_plan(
        pb.UpdatePlanRequest(shop_id="s1", plan=plan, update_mask=FieldMask(paths=list(paths)))
    )
    updated: pb.Plan = reply.plan
    return updated


async def test_published_plans_change_only_safely_and_are_never_deleted(
    lc: AsyncCustopsClient,
) -> None:
    active = await _in_state(lc, "ACTIVE")
    with pytest.raises(CustopsError) as err:
        await lc.plans.delete_plan(pb.DeletePlanRequest(shop_id="s1", plan_id=active.plan_id))
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    renamed = await _update(lc, active.plan_id, pb.Plan(display_name="renamed"), "display_name")
    assert renamed.display_name == "renamed" and renamed.etag != active.etag
    raised = await _update(
        lc,
        active.plan_id,
        pb.Plan(limits=pb.PlanLimits(total_budget=20_000)),
        "limits.total_budget",
    )
    assert raised.limits.total_budget == 20_000
    longer = "0-0 0-0 0-0 1-31 1-12 * 2026-2028 2"
    extended = await _update(
        lc, active.plan_id, pb.Plan(time=pb.PlanTime(term=longer)), "time.term"
    )
    assert extended.time.term == longer
    unsafe = [
        (pb.Plan(audience=active.audience), "audience"),
        (pb.Plan(time=pb.PlanTime(execution="0 0 8 * * * * 31")), "time.execution"),
        (pb.Plan(limits=pb.PlanLimits(total_budget=5)), "limits.total_budget"),
        (pb.Plan(time=pb.PlanTime(term="0-0 0-0 0-0 1-31 1-12 * 2026-2026 2")), "time.term"),
    ]
    for changes, path in unsafe:
        with pytest.raises(CustopsError) as err:
            await _update(lc, active.plan_id, changes, path)
        assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION, path
        assert err.value.reason == "UNSAFE_CHANGE"
    ended = await step(lc, "End", extended)
    with pytest.raises(CustopsError) as err:
        await _update(lc, ended.plan_id, pb.Plan(display_name="late"), "display_name")
    assert err.value.reason == "PLAN_NOT_EDITABLE"


async def test_etags_request_ids_and_shops(lc: AsyncCustopsClient) -> None:
    plan = await draft(lc)
    stale = pb.Plan()
    stale.CopyFrom(plan)
    stale.etag = "r999"
    with pytest.raises(CustopsError) as err:
        await step(lc, "Publish", stale)
    assert err.value.code is grpc.StatusCode.ABORTED
    first = await step(lc, "Publish", plan, request_id="pub-1")
    assert await step(lc, "Publish", plan, request_id="pub-1") == first  # replayed, not refused
    with pytest.raises(CustopsError) as err:
        await lc.plans.pause_plan(pb.PausePlanRequest(shop_id="other", plan_id=plan.plan_id))
    assert err.value.code is grpc.StatusCode.NOT_FOUND
