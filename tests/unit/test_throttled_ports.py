"""server.downstream.throttled: the run-side ports through their buckets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc
import pytest

from domain.downstream_ports import Grant, Granted, Recover, Refusal
from server.downstream.errors import PUSHED_BACK, CallFailed
from server.downstream.throttled import ThrottledBenefits
from server.stand_ins.pressure import Bucket
from server.throttle.buckets import BACKOFF, BucketSettings, LocalBuckets

GRANT = Grant("k", "m1", "t1", 1, "plans/p")


class Platform:
    """A benefit platform that answers as told."""

    def __init__(self) -> None:
        self.refusal: Refusal | None = None
        self.failure: CallFailed | None = None

    async def grant(self, shop_id: str, grants: Sequence[Grant]) -> list[Granted]:
        if self.failure is not None:
            raise self.failure
        return [Granted(self.refusal) for _ in grants]

    async def recover(self, shop_id: str, items: Sequence[Recover]) -> list[Refusal | None]:
        return [self.refusal for _ in items]


def setup() -> tuple[Platform, LocalBuckets, ThrottledBenefits]:
    platform = Platform()
    buckets = LocalBuckets({"benefit": BucketSettings(rate=0.0, capacity=10)}, clock_us=lambda: 0)
    return platform, buckets, ThrottledBenefits(platform, buckets)


async def factor(buckets: LocalBuckets) -> float:
    return (await buckets.settings("benefit"))[1]


async def test_a_call_takes_a_token_per_item_first() -> None:
    _, buckets, benefits = setup()
    await benefits.grant("s1", [GRANT] * 4)
    await benefits.recover("s1", [Recover("r", "i1", "why")] * 6)
    assert (await buckets.take("benefit", 1)).granted == 0  # 10 of 10 taken, none refilled


async def test_an_item_refused_for_capacity_slows_the_bucket() -> None:
    platform, buckets, benefits = setup()
    platform.refusal = Refusal(PUSHED_BACK, True)
    assert await benefits.grant("s1", [GRANT]) == [Granted(platform.refusal)]
    assert await factor(buckets) == BACKOFF
    platform.refusal = Refusal("OUT_OF_STOCK", False)  # any other answer: a step back up
    await benefits.recover("s1", [Recover("r", "i1", "why")])
    assert await factor(buckets) > BACKOFF


async def test_a_call_refused_for_capacity_slows_the_bucket_and_fails() -> None:
    platform, buckets, benefits = setup()
    platform.failure = CallFailed("benefit platform", grpc.StatusCode.RESOURCE_EXHAUSTED, "")
    with pytest.raises(CallFailed) as failed:
        await benefits.grant("s1", [GRANT])
    assert (failed.value.reason, failed.value.retryable) == (PUSHED_BACK, True)
    assert await factor(buckets) == BACKOFF


async def test_burst_sized_calls_side_by_side_reach_the_downstream_within_its_rate() -> None:
    """Eight callers at once (two replicas' engines), each call the whole
    burst: a downstream that allows the configured rate, with room for one
    call more, refuses none of them. Taken in halves, calls waiting side by
    side each held a half and went out together above the rate."""
    rate, burst, calls_each, callers = 2000.0, 500, 2, 8
    judge = Bucket(rate, 2 * burst)  # the stand-ins' own limit
    refused = []

    class Downstream(Platform):
        async def grant(self, shop_id: str, grants: Sequence[Grant]) -> list[Granted]:
            if not judge.take(len(grants)):
                refused.append(len(grants))
            return await super().grant(shop_id, grants)

    buckets = LocalBuckets(
        {"benefit": BucketSettings(rate, burst)},
        clock_us=lambda: int(time.monotonic() * 1_000_000),
    )
    benefits = ThrottledBenefits(Downstream(), buckets)

    async def caller() -> None:
        for _ in range(calls_each):  # bounded: 8,000 items at 2,000/s
            await benefits.grant("s1", [GRANT] * burst)

    await asyncio.gather(*(caller() for _ in range(callers)))
    assert refused == []
