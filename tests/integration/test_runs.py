"""Running plans through a real server and its embedded stand-ins: the
benefit platform's own instances are the witness, not our counters."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from custops.audience.v1 import audience_pb2, audience_pb2_grpc
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.stand_ins.population import LEVELS
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_plans_api import birthday_plan

POPULATION = 3000
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[tuple[Platform, AsyncCustopsClient]]:
    platform = Platform(
        settings(database_url, stubs_population=POPULATION, engine_poll=0.05),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
        yield platform, client
    await platform.stop(grace=1)


def immediate_plan() -> pb.Plan:
    plan = birthday_plan("Everyone but V0, at once")
    plan.audience.CopyFrom(
        audience_pb2.AudienceRule(
            negate=audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=["V0"]))
        )
    )
    plan.time.execution = "* * * * * * * 1"
    plan.time.term = "0-0 0-0 0-0 1-31 1-12 * 2026-2030 2"
    plan.limits.Clear()  # frequency, budget and quiet hours have tests of their own
    plan.actions[0].grant_benefit.benefits[0].template_id = "coupon-10-off-100"
    del plan.actions[1:]  # grants only: messages have tests of their own
    return plan


async def publish_to_everyone(
    client: AsyncCustopsClient, shop: str, plan: pb.Plan | None = None
) -> pb.Plan:
    """`plan` (an immediate one by default) for every member of the shop,
    created and published: it runs at once. The draft, as created."""
    plan = plan or immediate_plan()
    plan.audience.CopyFrom(
        audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=list(LEVELS)))
    )
    draft: pb.Plan = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop, plan=plan))
    ).plan
    await client.plans.publish_plan(
        pb.PublishPlanRequest(shop_id=shop, plan_id=draft.plan_id, etag=draft.etag)
    )
    return draft


async def throttle_benefits(client: AsyncCustopsClient, rate: float, burst: int) -> None:
    """The benefit system's rate and burst, for every replica."""
    await client.plans.update_throttle_setting(
        pb.UpdateThrottleSettingRequest(
            setting=pb.ThrottleSetting(
                downstream=pb.DOWNSTREAM_BENEFIT, rate_per_second=rate, burst=burst
            )
        )
    )


async def _audience(platform: Platform, plan: pb.Plan) -> set[str]:
    members: set[str] = set()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel:
        stub = audience_pb2_grpc.AudienceServiceStub(channel)
        token = ""
        for _ in range(100):
            page = await stub.ListAudienceMembers(
                audience_pb2.ListAudienceMembersRequest(
                    shop_id=plan.shop_id, rule=plan.audience, page_size=5000, page_token=token
                )
            )
            members |= set(page.member_ids)
            token = page.next_page_token
            if not token:
                break
    return members


async def _publish(client: AsyncCustopsClient, plan: pb.Plan, shop_id: str = "s1") -> pb.Plan:
    """The plan, created and published."""
    draft = (await client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop_id, plan=plan))).plan
    published: pb.Plan = (
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=shop_id, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    return published


async def _finished(
    client: AsyncCustopsClient,
    plan: pb.Plan,
    run_id: str = "",
    ended: tuple[int, ...] = (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES),
    clock: SteppingClock | None = None,
    step: timedelta = timedelta(0),
    polls: int = 600,
) -> pb.PlanRun:
    """The run (the newest, unless named) once it is in one of the `ended`
    states; with a `clock`, moved on by `step` each poll so that retries
    with back-off come due."""
    for _ in range(polls):  # bounded: the server's scheduler and workers do the run
        run: pb.PlanRun | None
        if run_id:
            run = (
                await client.plans.get_plan_run(
                    pb.GetPlanRunRequest(shop_id=plan.shop_id, plan_id=plan.plan_id, run_id=run_id)
                )
            ).run
        else:
            runs = (
                await client.plans.list_plan_runs(
                    pb.ListPlanRunsRequest(shop_id=plan.shop_id, plan_id=plan.plan_id)
                ).first_page()
            ).runs
            run = runs[0] if runs else None
        if run is not None and run.state in ended:
            return run
        if clock is not None:
            clock.current += step
        await asyncio.sleep(0.1)
    raise AssertionError("the run did not finish")


def _granted(platform: Platform, plan_id: str) -> Counter[str]:
    """Benefit instances per member under the plan, as the benefit platform holds them."""
    assert platform.stubs is not None
    return Counter(
        i.member_id
        for i in platform.stubs.benefits.instances.values()
        if i.source == f"plans/{plan_id}"
    )


async def test_an_immediate_plan_grants_each_member_once(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    published = await _publish(client, immediate_plan())
    run = await _finished(client, published)
    audience = await _audience(platform, published)
    assert 0 < len(audience) < POPULATION
    granted = _granted(platform, published.plan_id)
    assert set(granted) == audience and set(granted.values()) == {1}
    assert run.state == pb.RUN_STATE_SUCCEEDED and run.trigger == pb.RUN_TRIGGER_SCHEDULE
    p = run.progress
    assert (p.total, p.done, p.targeted, p.granted) == (len(audience),) * 4
    assert run.start_time.ToDatetime(UTC) <= run.end_time.ToDatetime(UTC)
    stats = (
        await client.plans.get_plan_statistics(
            pb.GetPlanStatisticsRequest(shop_id="s1", plan_id=published.plan_id)
        )
    ).statistics
    assert (stats.runs, stats.members_targeted, stats.benefits_granted) == (
        1,
        len(audience),
        len(audience),
    )
    got = await client.plans.get_plan_run(
        pb.GetPlanRunRequest(shop_id="s1", plan_id=published.plan_id, run_id=run.run_id)
    )
    assert got.run.run_id == run.run_id
    # A manual run of the same plan: a new period, its own grants, once per
    # request id however often the request is retried.
    first = await client.plans.trigger_plan_run(
        pb.TriggerPlanRunRequest(shop_id="s1", plan_id=published.plan_id, request_id="again-1")
    )
    again = await client.plans.trigger_plan_run(
        pb.TriggerPlanRunRequest(shop_id="s1", plan_id=published.plan_id, request_id="again-1")
    )
    assert first.run.run_id == again.run.run_id and first.run.trigger == pb.RUN_TRIGGER_MANUAL
    manual = await _finished(client, published, first.run.run_id)
    assert manual.state == pb.RUN_STATE_SUCCEEDED
    granted = _granted(platform, published.plan_id)
    assert set(granted) == audience and set(granted.values()) == {2}
    # Another shop's plan, an unknown run: NOT_FOUND, never data.
    with pytest.raises(CustopsError) as err:
        await client.plans.get_plan_run(
            pb.GetPlanRunRequest(shop_id="s2", plan_id=published.plan_id, run_id=run.run_id)
        )
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(CustopsError) as err:
        await client.plans.get_plan_run(
            pb.GetPlanRunRequest(shop_id="s1", plan_id=published.plan_id, run_id="bad id")
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
