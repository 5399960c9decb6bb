"""The shopper's side caches a shop's live plans in each replica, valid until
the shop's plans change (issue 25): a plan paused, ended or resumed through
one replica is what the next member page of any replica shows. Before, another
replica kept showing the paused plan for up to a second (its cache's timer).
Two platforms on one PostgreSQL database and one Redis; the second reaches the
first's stand-ins."""

from __future__ import annotations

import pytest

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.conftest import delete_keys
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, POPULATION, _publish
from tests.integration.test_scenario import _member_of_level, _shop, _view, gold_week

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_plan_change_on_one_replica_shows_on_the_next_page_of_another(
    database: str, redis_url: str, prefix: str
) -> None:
    shared = {"redis_url": redis_url, "redis_prefix": prefix}
    first = Platform(
        settings(database, stubs_population=POPULATION, **shared), clock=SteppingClock(NOW)
    )
    await first.start()
    stand_ins = f"127.0.0.1:{first.stubs_port}"
    second = Platform(
        settings(
            database,
            stubs="external",
            audience_target=stand_ins,
            benefit_target=stand_ins,
            notification_target=stand_ins,
            engine_concurrency=0,
            **shared,
        ),
        clock=SteppingClock(NOW),
    )
    await second.start()
    try:
        async with (
            AsyncCustopsClient(f"127.0.0.1:{first.port}", timeout=30) as one,
            AsyncCustopsClient(f"127.0.0.1:{second.port}", timeout=30) as two,
        ):
            shop = _shop()
            gold = await _publish(one, gold_week(), shop)
            insider = await _member_of_level(first, shop, "V3")

            async def shown(client: AsyncCustopsClient) -> list[str]:
                return [p.plan_id for p in (await _view(client, shop, insider)).plans]

            # Both replicas have read (and cached) the shop's plans.
            assert await shown(one) == await shown(two) == [gold.plan_id]
            await one.plans.pause_plan(pb.PausePlanRequest(shop_id=shop, plan_id=gold.plan_id))
            assert await shown(two) == []  # at once, not after a timer
            await two.plans.resume_plan(pb.ResumePlanRequest(shop_id=shop, plan_id=gold.plan_id))
            assert await shown(one) == [gold.plan_id]
            # Redis losing its keys (flushed, failed over empty) costs a reload,
            # never a stale page.
            assert await shown(two) == [gold.plan_id]
            await delete_keys(redis_url, prefix)
            await one.plans.end_plan(pb.EndPlanRequest(shop_id=shop, plan_id=gold.plan_id))
            assert await shown(two) == []
    finally:
        await second.stop(grace=1)
        await first.stop(grace=1)
