"""The SDK's pagers against the platform (PostgreSQL): every one of a
shop's 1,000 plans, once each, newest first, blocking and asyncio, without
the caller handling a page token."""

from __future__ import annotations

import asyncio

import pytest

from custops.client import AsyncCustopsClient, CustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.integration.conftest import settings
from tests.integration.test_plans_api import birthday_plan, shop

pytestmark = pytest.mark.postgres

PLANS = 1_000


async def test_pagers_walk_a_thousand_plans(database: str) -> None:
    platform = Platform(settings(database))
    await platform.start()
    target = f"127.0.0.1:{platform.port}"
    s = shop()
    try:
        async with AsyncCustopsClient(target, timeout=30) as client:
            made: list[str] = []
            for start in range(0, PLANS, 50):  # bounded: 20 rounds of 50 concurrent creates
                replies = await asyncio.gather(
                    *(
                        client.plans.create_plan(
                            pb.CreatePlanRequest(shop_id=s, plan=birthday_plan(f"plan {i}"))
                        )
                        for i in range(start, start + 50)
                    )
                )
                made += [r.plan.plan_id for r in replies]
            request = pb.ListPlansRequest(shop_id=s, page_size=64)
            walked = [plan.plan_id async for plan in client.plans.list_plans(request)]
            pages = [len(page.plans) async for page in client.plans.list_plans(request).pages]

        def blocking_walk() -> list[str]:
            with CustopsClient(target, timeout=30) as client:
                return [plan.plan_id for plan in client.plans.list_plans(request)]

        blocking = await asyncio.to_thread(blocking_walk)
    finally:
        await platform.stop(grace=1)

    assert len(walked) == PLANS and set(walked) == set(made)  # each plan once
    assert walked == blocking
    assert pages == [64] * 15 + [40]
    # Newest first: the last batch created comes before the first.
    assert walked.index(made[-1]) < walked.index(made[0])
