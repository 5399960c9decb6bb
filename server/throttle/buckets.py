"""The token bucket's contract, its arithmetic, and the in-process buckets.

A bucket holds up to `capacity` tokens and refills at `rate` tokens per
second (times an adaptive factor, see below). A decision takes the tokens
asked for (never more than `largest_take`: a bigger batch is acquired in
parts) or says how long to wait. Time is integer microseconds.

Why not the whole capacity: a caller told to wait for a full bucket wakes a
little late (the event loop, a round trip), and whatever would have flowed
in meanwhile overflows the full bucket and is lost: a downstream at 1,000/s
with a burst of 100 got about 950/s. So a decision leaves room for what
flows in during `LATE_S`, or half the capacity when that is less.
Why not less: a call taken in parts holds its first parts while it waits
for the rest, and calls waiting side by side then go out together with more
items than the bucket let through meanwhile (a downstream 10% above the rate
pushed back when burst-sized calls came in two halves). A call of at most
the capacity now holds back at most `LATE_S` of the rate.

Adaptive rate: a downstream's RESOURCE_EXHAUSTED halves the factor (down to
`MIN_FACTOR`); each success raises it by `RECOVERY_STEP` back up to 1, so a
pushed-back rate returns gradually to the configured ceiling.

Fair shares: a decision may name the shop it is for. The shops that asked
within `ACTIVE_US` split the rate by their weights (1 unless configured):
each has a level of its own that fills at its share of the rate, up to its
share of the capacity, and the bucket keeps at least the sum of the other
shops' levels for them. A shop may take what the others do not hold
(so what one leaves unused goes to the others: max-min fair), and every
take still comes out of the one bucket, so the downstream never sees more
than its rate. See `share_decide`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from server.metrics import NO_METRICS, Metrics

MIN_FACTOR = 0.05
BACKOFF = 0.5
RECOVERY_STEP = 0.05
NEVER = -1  # wait: the rate is 0, no token will ever come
# A shop that asked within this long is running: it has a share.
ACTIVE_US = 1_000_000
# How late a waiter may wake without losing tokens (see largest_take).
LATE_S = 0.03


class BucketUnavailable(Exception):
    """The bucket's store cannot be reached; the caller waits (fail closed)."""


class Starved(Exception):
    """The shop's share will not have the tokens for a while: rather than
    hold a worker while waiting, the caller sets its work aside."""

    def __init__(self, wait_us: int) -> None:
        super().__init__(f"no tokens for {wait_us / 1e6:.2f} s")
        self.wait_us = wait_us


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

    async def weights(self, name: str) -> dict[str, float]:
        """The shops' weights configured for this bucket, by shop id."""
        ...


@dataclass(frozen=True)
class Decision:
    granted: int  # tokens taken now (0 or the amount asked, capped by `largest_take`)
    wait_us: int  # when not granted: microseconds until it could be; NEVER if never


@dataclass
class Shares:
    """A bucket's shops that are running: their levels and when each last asked."""

    levels: dict[str, float] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)


class Buckets(Protocol):
    async def take(
        self, name: str, tokens: int, now_us: int | None = None, shop: str | None = None
    ) -> Decision:
        """One decision: take up to `tokens` (at most `largest_take` of the
        capacity, or of the shop's share of it) or say how long to wait."""
        ...

    async def configure_weight(self, name: str, shop: str, weight: float) -> None:
        """Set a shop's weight in a bucket's shares, for every replica."""
        ...

    async def running(self, name: str) -> dict[str, float]:
        """The shops that are sharing the bucket now, with their weights."""
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
    shop: str | None = None,
    patience: float | None = None,
    metrics: Metrics = NO_METRICS,
) -> None:
    """Wait until `tokens` were taken, in parts when they exceed the capacity
    (or the shop's share of it). No sleep is longer than `max_wait`, so a
    raised rate (or a rate back from 0) is noticed within it: that bounds the
    rate pick-up delay. With `patience`, a wait longer than that before the
    first token raises Starved instead (nothing was taken yet)."""
    started = time.perf_counter()
    try:
        await _acquire(buckets, name, tokens, sleep, max_wait, shop, patience, metrics)
    finally:
        metrics.waited(name, time.perf_counter() - started)


async def _acquire(
    buckets: Buckets,
    name: str,
    tokens: int,
    sleep: Callable[[float], object],
    max_wait: float,
    shop: str | None,
    patience: float | None,
    metrics: Metrics,
) -> None:
    metrics.tokens(name, tokens, 0)
    left = tokens
    outage = 0.05
    while left > 0:
        try:
            decision = await buckets.take(name, left, shop=shop)
        except BucketUnavailable:
            # Fail closed: while the shared bucket is unreachable nothing is
            # let through; keep asking, a little less often each time.
            await sleep(outage)  # type: ignore[misc]
            outage = min(outage * 2, max_wait)
            continue
        outage = 0.05
        if decision.granted:
            left -= decision.granted
            metrics.tokens(name, 0, decision.granted)
            continue
        long_wait = decision.wait_us == NEVER or decision.wait_us > (patience or 0) * 1e6
        if patience is not None and left == tokens and long_wait:
            raise Starved(decision.wait_us)
        pause = max_wait if decision.wait_us == NEVER else min(max_wait, decision.wait_us / 1e6)
        await sleep(max(pause, 0.001))  # type: ignore[misc]


async def adapt(
    buckets: Buckets, name: str, pushed_back: bool, metrics: Metrics = NO_METRICS
) -> None:
    """A downstream that pushed back lowers its bucket's rate; a call that went
    through raises it a step back toward the configured ceiling. Best effort:
    with the bucket's store away, the rate simply stays where it was."""
    if pushed_back:
        metrics.pushed_back(name)
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


def largest_take(room: float, rate: float) -> int:
    """The most one decision takes from a level that holds up to `room`
    tokens and fills at `rate`: all but what flows in during `LATE_S`, and
    at least half (at least one), so a late waker loses nothing."""
    return max(1, math.floor(max(room / 2, room - rate * LATE_S)))


def decide(
    level: float, want: int, settings: BucketSettings, factor: float
) -> tuple[float, Decision]:
    """Take `want` tokens (at most the capacity) from `level`, or say how
    long until they are there. The stand-ins' own limits use it as it is;
    the platform's buckets cap `want` by `largest_take` first."""
    want = min(want, settings.capacity)
    if level >= want:
        return level - want, Decision(want, 0)
    rate = settings.rate * factor
    wait = NEVER if rate <= 0 else math.ceil((want - level) / rate * 1e6)
    return level, Decision(0, wait)


def share_decide(
    level: float,
    shares: Shares,
    shop: str,
    want: int,
    now_us: int,
    elapsed_us: int,
    settings: BucketSettings,
    factor: float,
    weights: dict[str, float],
) -> tuple[float, Decision]:
    """A decision for one shop among those running (`level` already
    refilled; the shops' levels are refilled here over `elapsed_us`).
    The bucket keeps, at all times, at least the sum of the shops' levels,
    so a shop whose level holds the tokens asked can always have them.
    RedisBuckets does the same in Lua."""
    for other, seen in list(shares.seen.items()):
        if now_us - seen > ACTIVE_US and other != shop:
            del shares.seen[other]
            shares.levels.pop(other, None)
    joined = shop not in shares.seen
    shares.seen[shop] = now_us
    total = sum(weights.get(s, 1.0) for s in shares.seen)
    rate = settings.rate * factor
    for s in shares.seen:
        part = weights.get(s, 1.0) / total
        if s == shop and joined:  # a shop starting to run starts empty
            shares.levels[s] = 0.0
            continue
        grown = shares.levels.get(s, 0.0) + elapsed_us * rate * part / 1e6
        shares.levels[s] = min(settings.capacity * part, grown)
    part = weights.get(shop, 1.0) / total
    want = min(want, largest_take(settings.capacity * part, rate * part))
    others = sum(v for s, v in shares.levels.items() if s != shop)
    if level - want >= others - 1e-9:
        level -= want
        own = shares.levels[shop] - want
        shares.levels[shop] = max(0.0, min(own, level - others))
        return level, Decision(want, 0)
    share_rate = rate * part
    if share_rate <= 0:
        return level, Decision(0, NEVER)
    wait = math.ceil((want - shares.levels[shop]) / share_rate * 1e6)
    return level, Decision(0, max(1, wait))


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
        self._weights: dict[str, dict[str, float]] = {}
        self._factor: dict[str, float] = {}
        self._state: dict[str, tuple[float, int]] = {}
        self._shares: dict[str, Shares] = {}
        self._clock_us = clock_us
        self._source = source
        self._loaded: set[str] = set()

    async def _known(self, name: str) -> None:
        if self._source is not None and name not in self._loaded and self._source.keeps(name):
            self._settings[name] = await self._source.load(name)
            self._weights[name] = await self._source.weights(name)
            self._loaded.add(name)

    async def take(
        self, name: str, tokens: int, now_us: int | None = None, shop: str | None = None
    ) -> Decision:
        await self._known(name)
        settings = self._settings[name]
        now = self._clock_us() if now_us is None else now_us
        level, stamp = self._state.get(name, (float(settings.capacity), now))
        factor = self._factor.get(name, 1.0)
        level = refill(level, stamp, now, settings, factor)
        if shop is None:
            level, decision = decide(
                level,
                min(tokens, largest_take(settings.capacity, settings.rate * factor)),
                settings,
                factor,
            )
        else:
            level, decision = share_decide(
                level,
                self._shares.setdefault(name, Shares()),
                shop,
                tokens,
                now,
                max(0, now - stamp),
                settings,
                factor,
                self._weights.get(name, {}),
            )
        self._state[name] = (level, max(stamp, now))
        return decision

    async def configure(self, name: str, settings: BucketSettings) -> None:
        await self._known(name)
        self._settings[name] = settings
        self._loaded.add(name)

    async def configure_weight(self, name: str, shop: str, weight: float) -> None:
        await self._known(name)
        self._weights.setdefault(name, {})[shop] = weight

    async def running(self, name: str) -> dict[str, float]:
        await self._known(name)
        now = self._clock_us()
        shares = self._shares.get(name, Shares())
        weights = self._weights.get(name, {})
        return {s: weights.get(s, 1.0) for s, t in shares.seen.items() if now - t <= ACTIVE_US}

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
