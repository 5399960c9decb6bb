"""What makes a stand-in behave like a busy, imperfect system: a capacity
(token bucket over items) and faults injected on demand, with counters.

The three stand-ins share this one mechanism; settings change at run time
through StubAdminService.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from server.throttle.buckets import BucketSettings, decide, refill

# The largest batch any downstream contract here allows in one call.
MAX_BATCH = 5000


@dataclass
class CapacitySettings:
    items_per_second: float = 0.0  # 0 = unlimited
    burst: int = MAX_BATCH


@dataclass
class FaultSettings:
    error_rate: float = 0.0
    lost_response_rate: float = 0.0
    timeout_rate: float = 0.0
    latency_min: float = 0.0  # seconds
    latency_max: float = 0.0


@dataclass
class Counters:
    calls: int = 0
    items: int = 0
    succeeded: int = 0
    duplicates: int = 0
    failed: int = 0
    rejected_for_capacity: int = 0
    injected_errors: int = 0
    lost_responses: int = 0
    timeouts: int = 0
    failures_by_reason: Counter[str] = field(default_factory=Counter)


class Bucket:
    """A token bucket in this process: `rate` items per second (0 = unlimited),
    up to `burst`; the arithmetic is the platform's own (server.throttle)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.settings = BucketSettings(rate, burst if burst > 0 else MAX_BATCH)
        self._level = float(self.settings.capacity)
        self._stamp = _now_us()

    @property
    def burst(self) -> int:
        return self.settings.capacity

    def take(self, items: int) -> bool:
        if self.settings.rate <= 0:
            return True
        now = _now_us()
        level = refill(self._level, self._stamp, now, self.settings, 1.0)
        self._level, decision = decide(level, items, self.settings, 1.0)
        self._stamp = now
        return decision.wait_us == 0


def _now_us() -> int:
    return int(time.monotonic() * 1_000_000)


class Pressure:
    """Capacity and faults of one stand-in.

    A call goes: `await admit(context, items)` (latency, injected error or
    timeout, capacity), then the stand-in does the work, then
    `await deliver(context)` (may drop the response after the work)."""

    def __init__(self, system: str, seed: int = 0) -> None:
        self.system = system
        self.capacity = CapacitySettings()
        self.faults = FaultSettings()
        self.counters = Counters()
        self._bucket = Bucket(0.0, MAX_BATCH)
        self._random = random.Random(f"{seed}:{system}")

    def configure(self, capacity: CapacitySettings, faults: FaultSettings) -> None:
        self.faults = faults
        if capacity != self.capacity:
            # A new bucket only when the capacity changes: changing faults
            # mid-run must not hand out a fresh burst.
            self._bucket = Bucket(capacity.items_per_second, capacity.burst)
            self.capacity = CapacitySettings(capacity.items_per_second, self._bucket.burst)

    def reset_counters(self) -> None:
        self.counters = Counters()

    async def admit(self, context: grpc.aio.ServicerContext, items: int) -> None:
        self.counters.calls += 1
        self.counters.items += items
        f = self.faults
        if f.latency_max > 0:
            await asyncio.sleep(self._random.uniform(f.latency_min, f.latency_max))
        if self._random.random() < f.timeout_rate:
            self.counters.timeouts += 1
            remaining = context.time_remaining()
            await asyncio.sleep(min(60.0, (remaining or 30.0) + 0.5))
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected timeout")
        if self._random.random() < f.error_rate:
            self.counters.injected_errors += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.system}: injected error")
        if not self._bucket.take(items):
            self.counters.rejected_for_capacity += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.system}: over capacity ({self.capacity.items_per_second:g} items/s); "
                "slow down and retry",
            )

    async def deliver(self, context: grpc.aio.ServicerContext) -> None:
        """After the work: maybe lose the response (the work stays done)."""
        if self._random.random() < self.faults.lost_response_rate:
            self.counters.lost_responses += 1
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"{self.system}: injected lost response"
            )

    def item_succeeded(self, n: int = 1) -> None:
        self.counters.succeeded += n

    def item_duplicate(self, n: int = 1) -> None:
        self.counters.duplicates += n

    def item_failed(self, reason: str) -> None:
        self.counters.failed += 1
        self.counters.failures_by_reason[reason] += 1
