"""A throttle no Redis accident can bend (issue 22, item 1): the database
holds the rates, Redis only caches them. Before, a Redis restarted empty (or
flushed, or failed over to an empty replica) put every downstream back on the
default 1,000/s, burst 5,000, and a bucket whose state was gone restarted
full; GetThrottleSettings then showed 1,000."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.runs.delivery import NAME as DELIVERY
from tests.integration.conftest import settings
from tests.integration.private_redis import free_port, start_redis, stop_redis, until_up
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, publish_to_everyone, throttle_benefits

RATE, BURST = 500.0, 50
WINDOW = 8.0  # seconds measured after the flush


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    port = free_port()
    server = start_redis(port)
    client = redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        await until_up(client)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        await client.aclose()
        stop_redis(server)


async def _benefit_setting(client: AsyncCustopsClient) -> pb.ThrottleSetting:
    seen = (await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest())).settings
    setting: pb.ThrottleSetting = next(s for s in seen if s.downstream == pb.DOWNSTREAM_BENEFIT)
    return setting


@pytest.mark.redis
async def test_a_redis_flushed_mid_run_changes_neither_the_rate_nor_the_settings(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="custops.throttle")

    def reseeded() -> int:
        return sum("re-seeded from the database" in r.getMessage() for r in caplog.records)

    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/t.db",
            redis_url=redis_url,
            stubs_population=20_000,
            engine_poll=0.05,
        ),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    # Small batches, so that what the throttle admits is counted finely.
    platform.job_kinds[DELIVERY].batch_size = 25
    flusher = redis.from_url(redis_url)
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            await throttle_benefits(client, RATE, BURST)
            await publish_to_everyone(client, "s1")
            assert platform.stubs is not None
            instances = platform.stubs.benefits.instances

            async def granted_after(seconds: float) -> tuple[int, float]:
                await asyncio.sleep(seconds)
                return len(instances), time.monotonic()

            for _ in range(300):  # bounded: until the run grants steadily
                if len(instances) >= 2 * BURST:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            assert reseeded() == 0  # a first start fills the cache without a word
            await flusher.flushall()
            start, t0 = len(instances), time.monotonic()
            early, t1 = await granted_after(1.0)
            end, t2 = await granted_after(WINDOW - 1.0)
            rate = (end - start) / (t2 - t0)
            assert abs(rate - RATE) <= 0.02 * RATE, f"{rate:.0f}/s after the flush"
            # No burst: the first second after the flush admits no more than
            # a second's rate, the bucket's own burst and a batch in flight.
            assert early - start <= RATE * (t1 - t0) + BURST + 25 * 4, early - start
            setting = await _benefit_setting(client)
            assert (setting.rate_per_second, setting.burst) == (RATE, BURST)
            assert reseeded() >= 1  # the loss is said, once per bucket that met it
            print(f"after the flush: {rate:.0f}/s, first second {early - start} items")
    finally:
        await flusher.aclose()
        await platform.stop(grace=1)
