"""Recovering a run (回收): the benefit stand-in's own instances show that only
unused benefits come back, once, however often the recovery is asked for."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.stand_ins.pressure import CapacitySettings, FaultSettings
from tests.integration.test_runs import _finished, _publish, immediate_plan, running

__all__ = ["running"]  # the fixture, imported for pytest

USED = 100


def _states(platform: Platform, plan_id: str) -> Counter[int]:
    assert platform.stubs is not None
    book = platform.stubs.benefits
    return Counter(
        book.shown(i).state for i in book.instances.values() if i.source == f"plans/{plan_id}"
    )


async def test_recovery_takes_back_only_unused_benefits_once(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    plan = await _publish(client, immediate_plan())
    delivered = await _finished(client, plan)
    granted = delivered.progress.granted
    assert granted > USED
    # Shoppers use some of the coupons at checkout before the merchant
    # notices the plan went out wrong.
    assert platform.stubs is not None
    some = [
        i.instance_id
        for i in platform.stubs.benefits.instances.values()
        if i.source == f"plans/{plan.plan_id}"
    ][:USED]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.stubs_port}") as channel:
        benefits = benefit_pb2_grpc.BenefitServiceStub(channel)
        for n, instance_id in enumerate(some):
            await benefits.MarkBenefitUsed(
                benefit_pb2.MarkBenefitUsedRequest(
                    shop_id="s1", instance_id=instance_id, order_id=f"o{n}", idempotency_key=f"u{n}"
                )
            )
    assert _states(platform, plan.plan_id) == {
        benefit_pb2.BENEFIT_STATE_UNUSED: granted - USED,
        benefit_pb2.BENEFIT_STATE_USED: USED,
    }

    def recover(request_id: str) -> pb.RecoverPlanRunRequest:
        return pb.RecoverPlanRunRequest(
            shop_id="s1",
            plan_id=plan.plan_id,
            run_id=delivered.run_id,
            request_id=request_id,
            reason="wrong audience",
        )

    started = (await client.plans.recover_plan_run(recover("take-back-1"))).run
    again = (await client.plans.recover_plan_run(recover("take-back-1"))).run
    assert started.run_id == again.run_id  # a retried request meets the same recovery
    assert started.kind == pb.RUN_KIND_RECOVERY
    assert started.recovers_run_id == delivered.run_id
    first = await _finished(client, plan, started.run_id)
    assert first.state == pb.RUN_STATE_SUCCEEDED
    assert (first.progress.total, first.progress.done) == (granted, granted)
    assert first.progress.recovered == granted - USED
    assert dict(first.progress.skipped) == {"NOT_UNUSED": USED}
    after_first = _states(platform, plan.plan_id)
    assert after_first == {
        benefit_pb2.BENEFIT_STATE_RECOVERED: granted - USED,
        benefit_pb2.BENEFIT_STATE_USED: USED,
    }

    # What was taken back is not granted again by a retry of the run.
    with pytest.raises(CustopsError) as err:
        await client.plans.retry_failed_items(
            pb.RetryFailedItemsRequest(shop_id="s1", plan_id=plan.plan_id, run_id=delivered.run_id)
        )
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "RUN_RECOVERED"

    # A second recovery of the same run finds nothing left to take back.
    second_run = (await client.plans.recover_plan_run(recover("take-back-2"))).run
    assert second_run.run_id != started.run_id
    second = await _finished(client, plan, second_run.run_id)
    assert second.state == pb.RUN_STATE_SUCCEEDED and second.progress.recovered == 0
    assert _states(platform, plan.plan_id) == after_first

    stats = (
        await client.plans.get_plan_statistics(
            pb.GetPlanStatisticsRequest(shop_id="s1", plan_id=plan.plan_id)
        )
    ).statistics
    assert (stats.benefits_granted, stats.benefits_recovered) == (granted, granted - USED)
    assert stats.members_targeted == delivered.progress.targeted

    # A run still going cannot be taken back: it would grant behind the
    # recovery's back. Cancelled, and its last batch recorded, it can.
    benefit = platform.stubs.pressures["benefit"]
    benefit.configure(CapacitySettings(), FaultSettings(latency_min=0.3, latency_max=0.3))
    calls = benefit.counters.calls
    late = (
        await client.plans.trigger_plan_run(
            pb.TriggerPlanRunRequest(shop_id="s1", plan_id=plan.plan_id, request_id="late")
        )
    ).run
    for _ in range(100):  # bounded: until a grant call is in flight
        if benefit.counters.calls > calls:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(CustopsError) as err:
        await client.plans.recover_plan_run(
            pb.RecoverPlanRunRequest(shop_id="s1", plan_id=plan.plan_id, run_id=late.run_id)
        )
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    await client.plans.cancel_plan_run(
        pb.CancelPlanRunRequest(shop_id="s1", plan_id=plan.plan_id, run_id=late.run_id)
    )
    benefit.configure(CapacitySettings(), FaultSettings())
    for _ in range(100):  # bounded: settles within a lease
        try:
            third = await client.plans.recover_plan_run(
                pb.RecoverPlanRunRequest(shop_id="s1", plan_id=plan.plan_id, run_id=late.run_id)
            )
            break
        except CustopsError as exc:
            assert exc.code is grpc.StatusCode.UNAVAILABLE  # its last batch is being recorded
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("the cancelled run did not settle")
    cancelled = await _finished(client, plan, late.run_id, ended=(pb.RUN_STATE_CANCELLED,))
    third_done = await _finished(client, plan, third.run.run_id)
    assert cancelled.progress.granted > 0  # the batches in flight were recorded
    assert third_done.progress.recovered == cancelled.progress.granted
    # Everything the cancelled run granted came back with it.
    assert _states(platform, plan.plan_id) == {
        benefit_pb2.BENEFIT_STATE_RECOVERED: granted - USED + cancelled.progress.granted,
        benefit_pb2.BENEFIT_STATE_USED: USED,
    }

    # Only a delivery run's grants can be taken back.
    with pytest.raises(CustopsError) as err:
        await client.plans.recover_plan_run(
            pb.RecoverPlanRunRequest(shop_id="s1", plan_id=plan.plan_id, run_id=first.run_id)
        )
    assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
    # Another shop: NOT_FOUND, and nothing is taken back.
    with pytest.raises(CustopsError) as err:
        await client.plans.recover_plan_run(
            pb.RecoverPlanRunRequest(shop_id="s2", plan_id=plan.plan_id, run_id=delivered.run_id)
        )
    assert err.value.code is grpc.StatusCode.NOT_FOUND
