"""Shoppers' writes racing over two `custops serve` replicas on one
PostgreSQL (issue 22, item 7): 50 give-backs of one use at once, split over
the two, give it back once, and every loser is told so — as it would be had
it come second."""

from __future__ import annotations

import uuid

import grpc
import pytest

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from tests.e2e import process
from tests.e2e.test_run_processes import (
    SHOP,
    _instances,
    _publish,
    _run_finished,
    _run_started,
    _server,
    _stubs,
)
from tests.integration.test_scenario import used_then_given_back_at_once

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_give_backs_racing_over_two_replicas_give_back_once(
    database: str, redis_url: str
) -> None:
    stubs = await _stubs(population=2_000)
    started: list[process.ServerProcess] = [stubs]
    prefix = f"racing-{uuid.uuid4().hex[:8]}"
    try:
        replicas = []
        for _ in range(2):  # one after the other: the first migrates
            replica = await _server(database, redis_url, prefix, stubs)
            started.append(replica)
            replicas.append(replica)
        async with (
            AsyncCustopsClient(f"127.0.0.1:{replicas[0].port}", timeout=30) as first,
            AsyncCustopsClient(f"127.0.0.1:{replicas[1].port}", timeout=30) as second,
        ):
            plan = await _publish(first)
            run = await _run_started(first, plan)
            await _run_finished(first, plan, run.run_id, replicas)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{stubs.stubs_port}") as channel:
                coupon = (await _instances(channel, plan.plan_id))[0]
            answers = await used_then_given_back_at_once(
                [first, second], SHOP, coupon.member_id, coupon.instance_id
            )
            assert answers == {"OK": 1, "BENEFIT_ALREADY_REPLENISHED": 49}
            stats = (
                await second.plans.get_plan_statistics(
                    pb.GetPlanStatisticsRequest(shop_id=SHOP, plan_id=plan.plan_id)
                )
            ).statistics
            assert stats.benefits_replenished == 1
    finally:
        for server in started:
            await server.stop()
