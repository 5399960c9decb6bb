"""Fair shares across shops (issue 22, item 2): before, one shop's
million-member run took the whole downstream while another shop's small run
waited; the per-shop settings were stored and not applied.

Two shops with equal weights on a benefit system throttled at 1,000/s,
burst 100: shop A runs 200,000 members, shop B 20,000 started a few seconds
later. While both run, B gets at least 45% of the rate; when B is done A
has the whole rate again; each member of both is granted exactly once.
The downstream is the real gRPC stand-in, the bucket the shared Redis one,
the engine's leases in PostgreSQL. Sizes may be scaled down with
CUSTOPS_FAIR_SHARE_SCALE (the issue's figures are the default).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

import pytest

from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient
from server.app import Platform
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, publish_to_everyone, throttle_benefits

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SCALE = float(os.environ.get("CUSTOPS_FAIR_SHARE_SCALE", "1"))
A_MEMBERS, B_MEMBERS = int(200_000 * SCALE), int(20_000 * SCALE)
RATE, BURST = 1000.0, 100
B_LATER = 5.0  # seconds after A's first grant


class Granted(dict[str, benefit_pb2.BenefitInstance]):
    """The stand-in's instances, counted by shop as they are made, with the
    time of each shop's grants in 0.25 s slots."""

    def __init__(self) -> None:
        super().__init__()
        self.by_shop: Counter[str] = Counter()
        self.slots: dict[str, Counter[int]] = {"A": Counter(), "B": Counter()}
        self.start = time.monotonic()

    def __setitem__(self, key: str, value: benefit_pb2.BenefitInstance) -> None:
        super().__setitem__(key, value)
        self.by_shop[value.shop_id] += 1
        self.slots[value.shop_id][int((time.monotonic() - self.start) * 4)] += 1


def _rate(slots: Counter[int], first: int, last: int) -> float:
    return sum(slots[s] for s in range(first, last)) / ((last - first) / 4)


async def test_two_shops_share_a_downstream_and_each_member_is_granted_once(
    database: str, redis_url: str, prefix: str
) -> None:
    platform = Platform(
        settings(
            database,
            redis_url=redis_url,
            redis_prefix=prefix,
            stubs_population=A_MEMBERS,
            stubs_shop_populations=f"B={B_MEMBERS}",
            engine_poll=0.05,
        ),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    assert platform.stubs is not None
    granted = Granted()
    platform.stubs.benefits.instances = granted
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            await throttle_benefits(client, RATE, BURST)
            await publish_to_everyone(client, "A")
            for _ in range(600):  # bounded: until A grants
                if granted.by_shop["A"]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(B_LATER)
            await publish_to_everyone(client, "B")
            deadline = time.monotonic() + 4 * (A_MEMBERS + B_MEMBERS) / RATE + 60
            while time.monotonic() < deadline:  # bounded: both runs done
                if granted.by_shop["A"] >= A_MEMBERS and granted.by_shop["B"] >= B_MEMBERS:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # anything more would be a double
    finally:
        await platform.stop(grace=1)

    # Exactly once: one coupon per member of each shop, nobody twice.
    assert dict(granted.by_shop) == {"A": A_MEMBERS, "B": B_MEMBERS}
    members = Counter((i.shop_id, i.member_id) for i in granted.values())
    assert len(members) == A_MEMBERS + B_MEMBERS and max(members.values()) == 1

    a, b = granted.slots["A"], granted.slots["B"]
    b_first, b_last = min(b), max(b)
    # While both run (B's first and last second left out: it starts empty
    # and ends mid-slot), B has at least 45% of what goes through.
    both = (b_first + 4, b_last - 4)
    b_rate, a_rate = _rate(b, *both), _rate(a, *both)
    report: dict[str, Any] = {"A while both": round(a_rate), "B while both": round(b_rate)}
    assert b_rate >= 0.45 * (a_rate + b_rate), report
    assert a_rate + b_rate <= RATE * 1.02, report
    # After B: A alone has the whole rate again. Measured from 6 s after B's
    # last grant (a shard set aside while starved waits at most 5 s) over
    # 15 s, so one scheduling hiccup of this shared machine is not the verdict.
    after = (b_last + 24, min(b_last + 84, max(a) - 1))
    if after[1] - after[0] >= 8:
        alone = _rate(a, *after)
        report["A alone"] = round(alone)
        # Never above the bucket: its rate over the window, plus its burst and
        # the calls in flight at the window's edge (one per engine slot, none
        # larger than the burst), whose tokens were taken before the edge and
        # whose items the stand-in records after it.
        seconds = (after[1] - after[0]) / 4
        edge = BURST * (1 + platform.settings.engine_concurrency)
        assert alone >= 0.93 * RATE and alone <= RATE + edge / seconds, report
        assert alone >= 1.8 * a_rate, report  # well above its share while both ran
    else:  # scaled down so far that A ended with B: nothing to measure
        assert SCALE < 1, report
    print(report)
