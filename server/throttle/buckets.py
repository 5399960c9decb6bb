"""The token bucket's contract, its arithmetic, and the in-process buckets.

A bucket holds up to `capacity` tokens and refills at `rate` tokens per
second (times an adaptive factor, see below). A decision takes the tokens
asked for (never more than the capacity: a bigger batch is acquired in
parts) or says how long to wait. Time is integer microseconds.

Adaptive rate: a downstream's RESOURCE_EXHAUSTED halves the factor (down to
`MIN_FACTOR`); each success raises it by `RECOVERY_STEP` back up to 1, so a
pushed-back rate returns gradually to the configured ceiling.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

MIN_FACTOR = 0.05
BACKOFF = 0.5
RECOVERY_STEP = 0.05
NEVER = -1  # wait: the rate is 0, no token will ever come


class BucketUnavailable(Exception):
    """The bucket's store cannot be reached; the caller waits (fail closed)."""


@dataclass(frozen=True)
class BucketSettings:
    rate: float  # tokens per second; 0 = no refill
    capacity: int  # largest burst, >= 1


# A bucket no one configured: no refill, one token (what reading it shows).
UNSET = BucketSettings(0.0, 1)


class SettingsSource(Protocol):
    """Where buckets whose settings must survive their store come from (the
    database): read when a bucket's cached settings are missing."""

    def keeps(self, name: str) -> bool:
        """Whether this bucket's settings are kept there."""
        ...

    async def load(self, name: str) -> BucketSettings: ...


@dataclass(frozen=True)
class Decision:
    granted: int  # tokens taken now (0 or the amount asked, capped at capacity)
    wait_us: int  # when not granted: microseconds until it could be; NEVER if never


class Buckets(Protocol):
    async def take(self, name: str, tokens: int, now_us: int | None = None) -> Decision:
        """One decision: take up to `tokens` (at most the capacity) or say how long to wait."""
        ...

    async def configure(self, name: str, settings: BucketSettings) -> None:
        """Set a bucket's rate and capacity, for every replica."""
        ...

    async def settings(self, name: str) -> tuple[BucketSettings, float]:
        """The configured settings and the adaptive factor in force."""
        ...

    async def penalize(self, name: str) -> float:
        """The downstream pushed back (RESOURCE_EXHAUSTED): lower the rate."""
        ...

    async def reward(self, name: str) -> float:
        """A call went through: raise the rate a step back toward the ceiling."""
        ...


async def acquire(
    buckets: Buckets,
    name: str,
    tokens: int,
    *,
    sleep: Callable[[float], object] = asyncio.sleep,
    max_wait: float = 0.25,
) -> None:
    """Wait until `tokens` were taken, in parts when they exceed the capacity.
    No sleep is longer than `max_wait`, so a raised rate (or a rate back from
    0) is noticed within it: that bounds the rate pick-up delay."""
    left = tokens
    outage = 0.05
    while left > 0:
        try:
            decision = await buckets.take(name, left)
        except BucketUnavailable:
            # Fail closed: while the shared bucket is unreachable nothing is
            # let through; keep asking, a little less often each time.
            await sleep(outage)  # type: ignore[misc]
            outage = min(outage * 2, max_wait)
            continue
        outage = 0.05
        if decision.granted:
            left -= decision.granted
            continue
        pause = max_wait if decision.wait_us == NEVER else min(max_wait, decision.wait_us / 1e6)
        await sleep(max(pause, 0.001))  # type: ignore[misc]


async def adapt(buckets: Buckets, name: str, pushed_back: bool) -> None:
    """A downstream that pushed back lowers its bucket's rate; a call that went
    through raises it a step back toward the configured ceiling. Best effort:
    with the bucket's store away, the rate simply stays where it was."""
    try:
        if pushed_back:
            await buckets.penalize(name)
        else:
            await buckets.reward(name)
    except BucketUnavailable:
        return


def refill(
    tokens: float, stamp_us: int, now_us: int, settings: BucketSettings, factor: float
) -> float:
    """The level at `now_us`; time running backwards counts as no time."""
    elapsed = max(0, now_us - stamp_us)
    return min(float(settings.capacity), tokens + elapsed * settings.rate * factor / 1e6)


def decide(
    level: float, want: int, settings: BucketSettings, factor: float
) -> tuple[float, Decision]:
    want = min(want, settings.capacity)
    if level >= want:
        return level - want, Decision(want, 0)
    rate = settings.rate * factor
    wait = NEVER if rate <= 0 else math.ceil((want - level) / rate * 1e6)
    return level, Decision(0, wait)


class LocalBuckets:
    """Buckets in this process only: the stand-in when no Redis is configured.
    Settings kept in a source are read from it at a bucket's first use."""

    def __init__(
        self,
        defaults: dict[str, BucketSettings],
        clock_us: Callable[[], int],
        source: SettingsSource | None = None,
    ) -> None:
        self._settings = dict(defaults)
        self._factor: dict[str, float] = {}
        self._state: dict[str, tuple[float, int]] = {}
        self._clock_us = clock_us
        self._source = source
        self._loaded: set[str] = set()

    async def _known(self, name: str) -> None:
        if self._source is not None and name not in self._loaded and self._source.keeps(name):
            self._settings[name] = await self._source.load(name)
            self._loaded.add(name)

    async def take(self, name: str, tokens: int, now_us: int | None = None) -> Decision:
        await self._known(name)
        settings = self._settings[name]
        now = self._clock_us() if now_us is None else now_us
        level, stamp = self._state.get(name, (float(settings.capacity), now))
        factor = self._factor.get(name, 1.0)
        level, decision = decide(
            refill(level, stamp, now, settings, factor), tokens, settings, factor
        )
        self._state[name] = (level, max(stamp, now))
        return decision

    async def configure(self, name: str, settings: BucketSettings) -> None:
        self._settings[name] = settings
        self._loaded.add(name)

    async def settings(self, name: str) -> tuple[BucketSettings, float]:
        await self._known(name)
        # A bucket never configured reads as RedisBuckets reads it.
        return self._settings.get(name, UNSET), self._factor.get(name, 1.0)

    async def penalize(self, name: str) -> float:
        self._factor[name] = max(MIN_FACTOR, self._factor.get(name, 1.0) * BACKOFF)
        return self._factor[name]

    async def reward(self, name: str) -> float:
        self._factor[name] = min(1.0, self._factor.get(name, 1.0) + RECOVERY_STEP)
        return self._factor[name]
