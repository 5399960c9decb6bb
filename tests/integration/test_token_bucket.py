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


async def _drain(buckets: Buckets, now_us: int) -> None:
    """Take every token the bucket holds at `now_us`."""
    for _ in range(20):  # bounded: a bucket of 10 is empty after ten takes
        if not (await buckets.take("benefit", 1, now_us=now_us)).granted:
            return
    raise AssertionError("the bucket never ran dry")


async def test_take_refill_and_wait(buckets: Buckets) -> None:
    # A decision leaves room for what flows in while a waiter wakes late
    # (30 ms at 5/s: 0.15 tokens): 9 of the 10.
    assert (await buckets.take("benefit", 10, now_us=T0)).granted == 9
    short = await buckets.take("benefit", 10, now_us=T0)
    assert (short.granted, short.wait_us) == (0, 1_600_000)  # 9 asked, 1 there
    assert (await buckets.take("benefit", 1, now_us=T0)).granted == 1
    empty = await buckets.take("benefit", 1, now_us=T0)
    assert (empty.granted, empty.wait_us) == (0, 200_000)  # 5 tokens/s
    assert (await buckets.take("benefit", 1, now_us=T0 + 199_999)).granted == 0
    assert (await buckets.take("benefit", 1, now_us=T0 + 200_000)).granted == 1
    # Time that runs backwards adds nothing and takes nothing away.
    back = await buckets.take("benefit", 1, now_us=T0 - 5_000_000)
    assert back.granted == 0 and back.wait_us == 200_000


async def test_a_batch_bigger_than_the_bucket_is_taken_in_parts(buckets: Buckets) -> None:
    first = await buckets.take("benefit", 25, now_us=T0)
    assert first.granted == 9  # as much as one decision takes, not a refusal
    await _drain(buckets, T0)
    clock = {"now": T0}
    taken = []

    class Clocked:
        async def take(
            self, name: str, tokens: int, now_us: int | None = None, shop: str | None = None
        ) -> object:
            decision = await buckets.take(name, tokens, now_us=clock["now"], shop=shop)
            taken.append(decision.granted)
            return decision

    async def sleep(seconds: float) -> None:
        clock["now"] += int(seconds * 1_000_000)

    await acquire(Clocked(), "benefit", 15, sleep=sleep, max_wait=10)  # type: ignore[arg-type]
    assert sum(taken) == 15 and max(taken) <= 9
    assert clock["now"] - T0 >= 3_000_000  # 15 tokens at 5 per second


async def test_a_fast_small_bucket_is_taken_half_at_a_time(buckets: Buckets) -> None:
    """At 1,000/s, 30 ms would be 30 tokens, more than a bucket of 10: a
    decision then takes half, still leaving a late waker room."""
    await buckets.configure("benefit", BucketSettings(rate=1000.0, capacity=10))
    assert (await buckets.take("benefit", 10, now_us=T0 + 60_000_000)).granted == 5


async def test_rate_changes_are_in_force_at_once(buckets: Buckets) -> None:
    await _drain(buckets, T0)
    await buckets.configure("benefit", BucketSettings(rate=100.0, capacity=10))
    decision = await buckets.take("benefit", 1, now_us=T0)
    assert decision.wait_us == 10_000
    await buckets.configure("benefit", BucketSettings(rate=0.0, capacity=10))
    assert (await buckets.take("benefit", 1, now_us=T0 + 60_000_000)).wait_us == NEVER


async def test_the_rate_adapts_to_push_back(buckets: Buckets) -> None:
    assert await buckets.penalize("benefit") == 0.5
    assert await buckets.penalize("benefit") == 0.25
    await _drain(buckets, T0)
    slowed = await buckets.take("benefit", 1, now_us=T0)
    assert slowed.wait_us == 800_000  # 5/s x 0.25
    for _ in range(30):
        factor = await buckets.reward("benefit")
    assert factor == 1.0  # back to the configured ceiling, and no higher
    assert (await buckets.take("benefit", 1, now_us=T0)).wait_us == 200_000


async def _share_out(
    buckets: Buckets, asks: dict[str, int], seconds: float, start_us: int
) -> dict[str, int]:
    """Every 10 ms each shop in `asks` asks for that many tokens (a shop asking
    0 is idle): how many each was granted over `seconds`."""
    granted = dict.fromkeys(asks, 0)
    step = 10_000
    for tick in range(int(seconds * 1e6) // step):
        now = start_us + tick * step
        for shop, want in asks.items():
            if want:
                granted[shop] += (await buckets.take("benefit", want, now, shop=shop)).granted
    return granted


async def test_running_shops_share_the_rate_and_one_alone_gets_it_all(buckets: Buckets) -> None:
    await buckets.configure("benefit", BucketSettings(rate=100.0, capacity=10))
    both = await _share_out(buckets, {"a": 10, "b": 10}, 10, T0)
    # 100/s for 10 s (and the burst in hand), split evenly between the two.
    assert sum(both.values()) <= 100 * 10 + 10
    assert both["a"] == pytest.approx(500, abs=15) and both["b"] == pytest.approx(500, abs=15)
    # b stops: within a second a has the whole rate again.
    alone = await _share_out(buckets, {"a": 10, "b": 0}, 10, T0 + 10_000_000)
    assert alone["a"] == pytest.approx(1000 - 50, abs=60)


async def test_shares_follow_the_weights(buckets: Buckets) -> None:
    await buckets.configure("benefit", BucketSettings(rate=100.0, capacity=20))
    await buckets.configure_weight("benefit", "a", 3.0)
    split = await _share_out(buckets, {"a": 20, "b": 20}, 10, T0)
    assert split["a"] == pytest.approx(750, abs=25) and split["b"] == pytest.approx(250, abs=25)
    assert await buckets.running("benefit") == {"a": 3.0, "b": 1.0}


async def test_what_a_shop_leaves_unused_goes_to_the_others(buckets: Buckets) -> None:
    """Max-min: b asks 10/s, less than its half; a takes the other 90/s."""
    await buckets.configure("benefit", BucketSettings(rate=100.0, capacity=10))
    granted = dict.fromkeys("ab", 0)
    for tick in range(1000):  # 10 s in steps of 10 ms
        now = T0 + tick * 10_000
        granted["a"] += (await buckets.take("benefit", 10, now, shop="a")).granted
        if tick % 10 == 0:
            granted["b"] += (await buckets.take("benefit", 1, now, shop="b")).granted
    assert granted["b"] >= 99  # every ask (but the first, when a left it nothing)
    assert granted["a"] == pytest.approx(900, abs=20)


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


class _Kept:
    """A source of settings that survive Redis (what the database is to the server)."""

    def keeps(self, name: str) -> bool:
        return True

    async def load(self, name: str) -> BucketSettings:
        return BucketSettings(rate=100.0, capacity=20)

    async def weights(self, name: str) -> dict[str, float]:
        return {"a": 3.0}


@pytest.mark.redis
async def test_shares_come_back_with_the_settings_after_a_flush(
    redis_url: str, redis_prefix: str
) -> None:
    """The shops' weights are cached with the rate: a Redis flushed (or
    failed over empty) has them read again from their source, and the shares
    hold as before."""
    client = await redis_store.connect(redis_url)
    assert client is not None
    prefix = f"{redis_prefix}:shares-{uuid.uuid4().hex[:8]}"
    buckets = RedisBuckets(client, prefix, {}, source=_Kept())
    try:
        before = await _share_out(buckets, {"a": 20, "b": 20}, 5, T0)
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
        after = await _share_out(buckets, {"a": 20, "b": 20}, 5, T0 + 5_000_000)
        for split in (before, after):
            assert split["a"] == pytest.approx(3 * split["b"], rel=0.1), split
    finally:
        await client.aclose()
