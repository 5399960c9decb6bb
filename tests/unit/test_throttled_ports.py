"""server.downstream.throttled: the run-side ports through their buckets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
import pytest

from domain import plan as d
from domain.audience import Levels, Rule
from domain.downstream_ports import (
    AudiencePage,
    AudienceQuery,
    Grant,
    Granted,
    Recover,
    Refusal,
)
from domain.plan import MessageChannel
from domain.runs import Run, RunKind, RunTrigger
from server.downstream.errors import PUSHED_BACK, CallFailed
from server.downstream.throttled import ThrottledAudience, ThrottledBenefits
from server.runs.delivery import Delivery, payload_of
from server.stand_ins.pressure import Bucket
from server.throttle.buckets import BACKOFF, BucketSettings, LocalBuckets

GRANT = Grant("k", "m1", "t1", 1, "plans/p")
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


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


async def test_a_call_larger_than_the_burst_goes_in_parts_and_a_failed_part_refuses_the_rest() -> (
    None
):
    """Twenty grants through a burst of 8 go as calls of 8, 8 and 4; when the
    second call fails as a whole, the first eight keep their instances and
    the other twelve are refused as that call was, to be tried again."""
    sizes: list[int] = []
    fail_call = 2

    class Downstream(Platform):
        async def grant(self, shop_id: str, grants: Sequence[Grant]) -> list[Granted]:
            sizes.append(len(grants))
            if len(sizes) == fail_call and self.failure is not None:
                raise self.failure
            return [Granted(None, ()) for _ in grants]

    platform = Downstream()
    buckets = LocalBuckets(
        {"benefit": BucketSettings(rate=1e6, capacity=8)},
        clock_us=lambda: time.monotonic_ns() // 1000,
    )
    benefits = ThrottledBenefits(platform, buckets)
    assert len(await benefits.grant("s1", [GRANT] * 20)) == 20 and sizes == [8, 8, 4]

    sizes.clear()
    platform.failure = CallFailed("benefit platform", grpc.StatusCode.UNAVAILABLE, "")
    answers = await benefits.grant("s1", [GRANT] * 20)
    assert sizes == [8, 8]
    assert answers == [Granted(None, ())] * 8 + [Granted(Refusal("UNAVAILABLE", True))] * 12
    sizes.clear()
    fail_call = 1
    with pytest.raises(CallFailed):  # the first part failing fails the call, as before
        await benefits.grant("s1", [GRANT] * 4)


class Members:
    """An audience system of 25 members on one shard, paged by position."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def page(self, query: AudienceQuery) -> AudiencePage:
        self.sizes.append(query.page_size)
        start = int(query.page_token or 0)
        end = min(start + query.page_size, 25)
        return AudiencePage(tuple(f"m{i}" for i in range(start, end)), str(end) if end < 25 else "")

    async def unknown(self, shop_id: str, member_ids: Sequence[str]) -> list[str]:
        return []

    async def opted_out(
        self, shop_id: str, member_ids: Sequence[str]
    ) -> dict[str, frozenset[MessageChannel]]:
        return {}

    async def matching(
        self, shop_id: str, member_ids: Sequence[str], rule: Rule, as_of: datetime, time_zone: str
    ) -> set[str]:
        return set(member_ids)


async def test_a_page_is_asked_no_larger_than_the_burst_and_a_batch_reads_on() -> None:
    """A batch of 20 members through an audience bucket with a burst of 8:
    calls of 8, 8 and 4, each let through by the bucket, then the next batch
    from where it stopped."""
    members = Members()
    buckets = LocalBuckets(
        {"audience": BucketSettings(rate=1e6, capacity=8)},
        clock_us=lambda: time.monotonic_ns() // 1000,
    )
    audience = ThrottledAudience(members, buckets)
    delivery = Delivery(None, audience, None, None, lambda: NOW)  # type: ignore[arg-type]
    spec = d.PlanSpec(display_name="p", audience=Levels(("V1",)), time=d.PlanTime("now"))
    plan = d.Plan("s1", "p1", spec, d.PlanState.ACTIVE, 1, "a", NOW, "a", NOW, "")
    run = Run("r1", "s1", "p1", RunKind.DELIVERY, RunTrigger.SCHEDULE, NOW, NOW)
    payload = payload_of(run, plan) | {"shards": 1}
    first = await delivery.load(payload, "0/1/", 20)
    assert [i.key for i in first.items] == [f"m{i}" for i in range(20)]
    assert members.sizes == [8, 8, 4]
    rest = await delivery.load(payload, first.next_cursor or "", 20)
    assert [i.key for i in rest.items] == [f"m{i}" for i in range(20, 25)]
    assert rest.next_cursor is None and members.sizes[3:] == [8]
