"""Runs against an imperfect benefit platform, on real Redis buckets: faults
injected in the stand-in, out-of-stock templates, capacities close to the
configured rates, and a 100,000-member audience. The stand-ins' own
instances and counters are the witness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.stand_ins.pressure import CapacitySettings, FaultSettings
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import (
    NOW,
    _audience,
    _finished,
    _granted,
    _publish,
    immediate_plan,
)

ENDED = tuple(  # every state but pending and running: a test fails fast on any of them
    v for v in pb.RunState.values() if v not in (pb.RUN_STATE_PENDING, pb.RUN_STATE_RUNNING)
)


@asynccontextmanager
async def _platform(
    database_url: str, redis_url: str, redis_prefix: str, population: int, **overrides: object
) -> AsyncIterator[tuple[Platform, AsyncCustopsClient, SteppingClock]]:
    clock = SteppingClock(NOW)
    platform = Platform(
        settings(
            database_url,
            stubs_population=population,
            engine_poll=0.05,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            **overrides,
        ),
        clock=clock,
    )
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            yield platform, client, clock
    finally:
        await platform.stop(grace=1)


async def _throttle(client: AsyncCustopsClient, downstream: int, rate: float, burst: int) -> None:
    await client.plans.update_throttle_setting(
        pb.UpdateThrottleSettingRequest(
            setting=pb.ThrottleSetting(downstream=downstream, rate_per_second=rate, burst=burst),  # type: ignore[arg-type]
            update_mask=FieldMask(paths=["rate_per_second", "burst"]),
        )
    )


async def _ended(
    client: AsyncCustopsClient,
    plan: pb.Plan,
    clock: SteppingClock,
    step: timedelta = timedelta(0),
    polls: int = 1200,
    run_id: str = "",
) -> pb.PlanRun:
    """The newest run (or `run_id`) once it is no longer pending or running."""
    return await _finished(client, plan, run_id, ENDED, clock, step, polls)


def _exactly_once(platform: Platform, plan: pb.Plan, audience: set[str]) -> None:
    granted = _granted(platform, plan.plan_id)
    assert set(granted) == audience, "every member of the audience got the benefit"
    duplicated = {m: n for m, n in granted.items() if n != 1}
    assert not duplicated, f"members granted more than once: {list(duplicated)[:5]}"


@pytest.mark.postgres
async def test_faults_in_the_benefit_platform_still_grant_each_member_once(
    postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with _platform(postgres_url, redis_url, redis_prefix, 20_000, downstream_timeout=0.3) as (
        platform,
        client,
        clock,
    ):
        assert platform.stubs is not None
        await _throttle(client, pb.DOWNSTREAM_BENEFIT, 100_000, 5000)
        benefit = platform.stubs.pressures["benefit"]
        plan = immediate_plan()
        # Two benefits per member: each batch of 500 members is two calls.
        plan.actions[0].grant_benefit.benefits.add(
            template_id="points-100", kind=benefit_pb2.BENEFIT_KIND_POINTS, quantity=1
        )
        # Published before the faults begin: publishing asks the benefit
        # platform about its templates, and a fault there is the publish's
        # own (tests/integration/test_publish_checks.py). The run, started
        # at the scheduler's next tick, meets them.
        plan = await _publish(client, plan)
        benefit.configure(
            CapacitySettings(),
            FaultSettings(error_rate=0.10, timeout_rate=0.05, lost_response_rate=0.10),
        )
        # The clock runs twice as fast as real time: back-offs come due
        # sooner, leases (30 s) still outlast every batch. A quarter of the
        # calls fail, and a batch that fails several times in a row waits
        # out jittered back-offs of up to 16-32 s: the run took 10 to 110 s
        # on this machine, so the wait is bounded at about 5 minutes.
        run = await _ended(client, plan, clock, step=timedelta(seconds=0.2), polls=3000)
        audience = await _audience(platform, plan)
        c = benefit.counters
        # Every kind of fault happened, and the replays of lost responses
        # met their first answer instead of granting again.
        assert c.injected_errors and c.timeouts and c.lost_responses
        assert c.duplicates >= 1
        assert run.state == pb.RUN_STATE_SUCCEEDED, dict(run.progress.failed_by_reason)
        assert run.progress.granted == 2 * len(audience)
        granted = _granted(platform, plan.plan_id)
        assert set(granted) == audience and set(granted.values()) == {2}


async def test_out_of_stock_members_fail_with_their_reason_and_a_retry_after_restock(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with _platform(database_url, redis_url, redis_prefix, 3000) as (platform, client, clock):
        assert platform.stubs is not None
        await _throttle(client, pb.DOWNSTREAM_BENEFIT, 100_000, 5000)
        stock = platform.stubs.benefits.stock
        stock[("", "coupon-10-off-100")] = 1000
        plan = await _publish(client, immediate_plan())
        run = await _ended(client, plan, clock)
        audience = await _audience(platform, plan)
        missing = len(audience) - 1000
        assert run.state == pb.RUN_STATE_COMPLETED_WITH_FAILURES
        assert (run.progress.granted, run.progress.failed) == (1000, missing)
        assert dict(run.progress.failed_by_reason) == {"OUT_OF_STOCK": missing}
        assert sum(_granted(platform, plan.plan_id).values()) == 1000
        # The merchant restocks and retries the failed members: each gets
        # the benefit once, nobody gets a second one.
        stock[("", "coupon-10-off-100")] = 10_000
        retried = await client.plans.retry_failed_items(
            pb.RetryFailedItemsRequest(shop_id="s1", plan_id=plan.plan_id, run_id=run.run_id)
        )
        assert retried.retried_count == missing
        after = await _ended(client, plan, clock, run_id=run.run_id)
        assert after.state == pb.RUN_STATE_SUCCEEDED and after.progress.failed == 0
        _exactly_once(platform, plan, audience)


@pytest.mark.postgres
@pytest.mark.parametrize("headroom", [1.1, 0.9])
async def test_capacities_just_above_the_configured_rates_see_no_push_back(
    postgres_url: str, redis_url: str, redis_prefix: str, headroom: float
) -> None:
    """10% above the configured rates: no RESOURCE_EXHAUSTED from either
    stand-in. The control at 10% below shows the test can tell, and that a
    pushed-back run still ends with each member granted once."""
    # ~12,000 members: at 10% below, the stand-ins fall 1,200 items behind,
    # more than their burst (two calls) can absorb.
    rate, burst = 1500.0, 500  # one page / one grant call
    async with _platform(postgres_url, redis_url, redis_prefix, 20_000) as (
        platform,
        client,
        clock,
    ):
        assert platform.stubs is not None
        for downstream in (pb.DOWNSTREAM_AUDIENCE, pb.DOWNSTREAM_BENEFIT):
            await _throttle(client, downstream, rate, burst)
        for system in ("audience", "benefit"):
            platform.stubs.pressures[system].configure(
                CapacitySettings(rate * headroom, 2 * burst), FaultSettings()
            )
        plan = await _publish(client, immediate_plan())
        # Pushed-back items are retried after a back-off: the clock moves.
        run = await _ended(client, plan, clock, step=timedelta(seconds=0.2))
        pushed_back = {
            s: platform.stubs.pressures[s].counters.rejected_for_capacity
            for s in ("audience", "benefit")
        }
        for system in ("audience", "benefit"):  # the witness reads without limits
            platform.stubs.pressures[system].configure(CapacitySettings(), FaultSettings())
        if headroom > 1:
            assert pushed_back == {"audience": 0, "benefit": 0}
        else:
            assert sum(pushed_back.values()) > 0
        assert run.state == pb.RUN_STATE_SUCCEEDED
        _exactly_once(platform, plan, await _audience(platform, plan))


@pytest.mark.postgres
async def test_a_run_over_100000_members_grants_each_once(
    postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    # About 60% of the stand-in's members are above level V0.
    async with _platform(postgres_url, redis_url, redis_prefix, 175_000) as (
        platform,
        client,
        clock,
    ):
        assert platform.stubs is not None
        for downstream in (pb.DOWNSTREAM_AUDIENCE, pb.DOWNSTREAM_BENEFIT):
            await _throttle(client, downstream, 1_000_000, 5000)
        plan = await _publish(client, immediate_plan())
        run = await _ended(client, plan, clock, polls=3000)
        audience = await _audience(platform, plan)
        assert len(audience) >= 100_000
        assert run.state == pb.RUN_STATE_SUCCEEDED
        assert run.progress.granted == len(audience)
        _exactly_once(platform, plan, audience)
