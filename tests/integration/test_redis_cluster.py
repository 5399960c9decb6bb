"""The platform on a real three-master Redis Cluster (tests/redis_cluster.py):
the URL of any one node is enough, a bucket's keys share a slot, and a plan
run is throttled through the cluster. The bucket's contract itself runs on
the cluster too (test_token_bucket.py's `cluster` cases)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server import redis_store
from server.app import Platform
from server.throttle.buckets import BucketSettings
from server.throttle.redis_buckets import RedisBuckets
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import _audience, _finished, _granted, _publish, immediate_plan

pytestmark = pytest.mark.redis
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


async def test_any_node_is_enough_and_a_buckets_keys_share_a_slot(
    redis_cluster_url: str,
) -> None:
    client = await redis_store.connect(redis_cluster_url)
    assert isinstance(client, RedisCluster)
    try:
        assert redis_store.mode(client) == "redis cluster"
        assert len(client.get_primaries()) == 3  # learnt from the one node named
        buckets = RedisBuckets(client, "slots", {"benefit": BucketSettings(10.0, 10)})
        names = [f"caller:front-office-{i}" for i in range(40)] + ["benefit", "benefit:s1"]
        nodes = set()
        for name in names:
            assert (await buckets.take(name, 1)).granted in (0, 1)
            state, settings_key = buckets._keys(name)
            slot = await client.cluster_keyslot(state)
            assert await client.cluster_keyslot(settings_key) == slot
            node = client.get_node_from_key(state)
            assert node is not None
            nodes.add(node.name)
        # Many buckets spread over the masters: the cluster shares the load.
        assert len(nodes) == 3
    finally:
        await client.aclose()


async def test_a_plan_run_is_throttled_through_the_cluster(
    tmp_path: Path, redis_cluster_url: str
) -> None:
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/c.db",
            redis_url=redis_cluster_url,
            redis_prefix="cluster-run",
            stubs_population=2000,
            engine_poll=0.05,
        ),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    try:
        assert redis_store.mode(platform._redis) == "redis cluster"
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            published = await _publish(client, immediate_plan())
            run = await _finished(client, published)
            audience = await _audience(platform, published)
        granted = _granted(platform, published.plan_id)
        assert run.state == pb.RUN_STATE_SUCCEEDED
        assert audience and set(granted) == audience and set(granted.values()) == {1}
        # The grants went through the cluster's benefit bucket.
        cluster = platform._redis
        assert isinstance(cluster, RedisCluster)
        state = await cluster.hgetall("cluster-run:bucket:{benefit}")
        assert b"tokens" in state and b"stamp" in state
    finally:
        await platform.stop(grace=1)


async def test_an_upgrade_keeps_the_throttle_settings_stored_before_hash_tags(
    redis_url: str, redis_prefix: str
) -> None:
    prefix = f"{redis_prefix}:upgrade"
    client = redis.from_url(redis_url)
    try:
        # What an earlier version stored for an operator's UpdateThrottleSetting.
        await client.hset(f"{prefix}:bucket:benefit:settings", mapping={"rate": 12, "capacity": 3})
        await client.hset(f"{prefix}:bucket:benefit:s1:settings", mapping={"rate": 2})
        # A setting changed since under the new key is not overwritten.
        await client.hset(f"{prefix}:bucket:audience:settings", mapping={"rate": 1})
        await client.hset(f"{prefix}:bucket:{{audience}}:settings", mapping={"rate": 7})
        defaults = {name: BucketSettings(1000.0, 5000) for name in ("benefit", "audience")}
        buckets = RedisBuckets(client, prefix, defaults)
        assert await buckets.adopt_untagged_settings() == 2
        assert await buckets.settings("benefit") == (BucketSettings(12.0, 3), 1.0)
        assert (await buckets.settings("benefit:s1"))[0].rate == 2.0
        assert (await buckets.settings("audience"))[0].rate == 7.0
        assert await client.exists(f"{prefix}:bucket:benefit:settings") == 0
        assert await buckets.adopt_untagged_settings() == 0  # once
        # And the adopted rate is the one decisions run by.
        # The bucket's 3 tokens: a decision leaves room for 30 ms of 12/s.
        assert (await buckets.take("benefit", 3, now_us=1_000_000)).granted == 2
        assert (await buckets.take("benefit", 1, now_us=1_000_000)).granted == 1
        assert (await buckets.take("benefit", 1, now_us=1_000_000)).wait_us == 83_334
    finally:
        await client.aclose()
