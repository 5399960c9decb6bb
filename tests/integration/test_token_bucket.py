"""Token buckets: the same contract in process and in the real Redis."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from server import redis_store
from server.throttle.buckets import (
    NEVER,
    Buckets,
    BucketSettings,
    BucketUnavailable,
    LocalBuckets,
    acquire,
)
from server.throttle.redis_buckets import RedisBuckets
from tests.integration.private_redis import free_port, start_redis, stop_redis, until_up

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000_000  # microseconds; the tests pass the time in
DEFAULTS = {"benefit": BucketSettings(rate=5.0, capacity=10)}


SHARED = [
    pytest.param("redis_url", marks=pytest.mark.redis, id="redis"),
    pytest.param("redis_cluster_url", marks=pytest.mark.redis, id="cluster"),
]


@pytest.fixture(params=["local", *SHARED])
async def buckets(request: pytest.FixtureRequest) -> AsyncIterator[Buckets]:
    if request.param == "local":
        yield LocalBuckets(dict(DEFAULTS), clock_us=lambda: T0)
        return
    url: str = request.getfixturevalue(request.param)
    prefix = f"{request.getfixturevalue('redis_prefix')}:{uuid.uuid4().hex[:8]}"
    client = await redis_store.connect(url)
    assert client is not None
    yield RedisBuckets(client, prefix, dict(DEFAULTS))
    await client.aclose()


async def test_take_refill_and_wait(buckets: Buckets) -> None:
    assert (await buckets.take("benefit", 10, now_us=T0)).granted == 10
    empty = await buckets.take("benefit", 1, now_us=T0)
    assert (empty.granted, empty.wait_us) == (0, 200_000)  # 5 tokens/s
    assert (await buckets.take("benefit", 1, now_us=T0 + 199_999)).granted == 0
    assert (await buckets.take("benefit", 1, now_us=T0 + 200_000)).granted == 1
    # Time that runs backwards adds nothing and takes nothing away.
    back = await buckets.take("benefit", 1, now_us=T0 - 5_000_000)
    assert back.granted == 0 and back.wait_us == 200_000


async def test_a_batch_bigger_than_the_bucket_is_taken_in_parts(buckets: Buckets) -> None:
    first = await buckets.take("benefit", 25, now_us=T0)
    assert first.granted == 10  # the capacity, not a refusal
    clock = {"now": T0}
    taken = []

    class Clocked:
        async def take(self, name: str, tokens: int, now_us: int | None = None) -> object:
            decision = await buckets.take(name, tokens, now_us=clock["now"])
            taken.append(decision.granted)
            return decision

    async def sleep(seconds: float) -> None:
        clock["now"] += int(seconds * 1_000_000)

    await acquire(Clocked(), "benefit", 15, sleep=sleep, max_wait=10)  # type: ignore[arg-type]
    assert sum(taken) == 15 and max(taken) <= 10
    assert clock["now"] - T0 >= 3_000_000  # 15 tokens at 5 per second


async def test_rate_changes_are_in_force_at_once(buckets: Buckets) -> None:
    await buckets.take("benefit", 10, now_us=T0)
    await buckets.configure("benefit", BucketSettings(rate=100.0, capacity=10))
    decision = await buckets.take("benefit", 1, now_us=T0)
    assert decision.wait_us == 10_000
    await buckets.configure("benefit", BucketSettings(rate=0.0, capacity=10))
    assert (await buckets.take("benefit", 1, now_us=T0 + 60_000_000)).wait_us == NEVER


async def test_the_rate_adapts_to_push_back(buckets: Buckets) -> None:
    assert await buckets.penalize("benefit") == 0.5
    assert await buckets.penalize("benefit") == 0.25
    await buckets.take("benefit", 10, now_us=T0)
    slowed = await buckets.take("benefit", 1, now_us=T0)
    assert slowed.wait_us == 800_000  # 5/s x 0.25
    for _ in range(30):
        factor = await buckets.reward("benefit")
    assert factor == 1.0  # back to the configured ceiling, and no higher
    assert (await buckets.take("benefit", 1, now_us=T0)).wait_us == 200_000


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from server import redis_store
    from server.throttle.buckets import BucketSettings
    from server.throttle.redis_buckets import RedisBuckets

    async def main(url, prefix):
        client = await redis_store.connect(url)
        buckets = RedisBuckets(client, prefix, {"b": BucketSettings(rate=0.0, capacity=100)})
        decisions = await asyncio.gather(*(buckets.take("b", 1) for _ in range(500)))
        print(sum(d.granted for d in decisions))
        await client.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.parametrize("store", SHARED)
async def test_many_processes_never_overshoot(store: str, request: pytest.FixtureRequest) -> None:
    redis_url: str = request.getfixturevalue(store)
    prefix = f"{request.getfixturevalue('redis_prefix')}:race-{store}"
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            redis_url,
            prefix,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.gather(*(w.communicate() for w in workers))
    admitted = [int(out.decode()) for out, _ in outputs]
    assert sum(admitted) == 100  # 2,000 concurrent asks, a budget of 100, no refill


@pytest.mark.redis
async def test_an_outage_holds_everything_back_until_redis_returns() -> None:
    port = free_port()
    server = start_redis(port)
    client = redis.from_url(
        f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        await until_up(client)
        buckets = RedisBuckets(client, "outage", {"b": BucketSettings(rate=1000.0, capacity=10)})
        assert (await buckets.take("b", 5)).granted == 5
        stop_redis(server)
        with pytest.raises(BucketUnavailable):
            await buckets.take("b", 1)
        refusals = 0
        admitted = asyncio.Event()
        kept_waiting = asyncio.Event()

        async def counting_sleep(seconds: float) -> None:
            nonlocal refusals
            refusals += 1
            if refusals >= 5:
                kept_waiting.set()
            await asyncio.sleep(min(seconds, 0.05))

        async def work() -> None:
            await acquire(buckets, "b", 3, sleep=counting_sleep, max_wait=0.2)
            admitted.set()

        task = asyncio.create_task(work())
        await asyncio.wait_for(kept_waiting.wait(), 30)  # it keeps asking...
        assert not admitted.is_set()  # ...and nothing is let through
        server = start_redis(port)
        await asyncio.wait_for(task, 30)
        assert admitted.is_set()
    finally:
        stop_redis(server)
        await client.aclose()
