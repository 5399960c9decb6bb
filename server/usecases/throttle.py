"""Throttle settings: the rate of each downstream system, for every replica.

The database holds them (their source of truth); the buckets (Redis, or the
process) cache them and read them back from it when their cache is gone.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import Aborted, FieldViolation, require
from domain.ports import RequestKey, UnitOfWork
from server import call_context
from server.persistence.throttle_settings import KeptThrottleSettings, SqlThrottleSettings
from server.throttle.buckets import Buckets, BucketSettings
from server.throttle.downstreams import DEFAULTS, DOWNSTREAMS, bucket_name
from server.usecases.once import remembered

__all__ = ["DEFAULTS", "DOWNSTREAMS", "Throttle", "ThrottleUseCases", "bucket_name"]


MAX_WEIGHT = 1000.0


@dataclass(frozen=True)
class Throttle:
    """A downstream's setting (no shop), or a shop's share of it: its weight
    and the rate that share gives it beside the shops running now."""

    downstream: str
    shop_id: str
    settings: BucketSettings
    factor: float
    weight: float = 1.0
    share_rate: float = 0.0  # a shop's: what it gets now if it runs

    @property
    def effective_rate(self) -> float:
        return self.share_rate if self.shop_id else self.settings.rate * self.factor

    @property
    def etag(self) -> str:
        kept = (
            f"w{self.weight}" if self.shop_id else f"{self.settings.rate}|{self.settings.capacity}"
        )
        return hashlib.sha256(kept.encode()).hexdigest()[:12]


class ThrottleUseCases:
    def __init__(
        self,
        buckets: Buckets,
        clock: Callable[[], datetime],
        stored: SqlThrottleSettings,
        uow: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self._buckets = buckets
        self._clock = clock
        self._stored = stored
        self._kept = KeptThrottleSettings(stored)
        self._uow = uow  # the request log: a retry replays the first answer

    async def get(self, shop_id: str = "", with_platform: bool = True) -> list[Throttle]:
        """The platform-wide settings (unless left out) and the shop's share,
        as the database holds them, with the adaptive factor in force."""
        out = []
        for downstream in DOWNSTREAMS:
            platform = await self._platform(downstream)
            if with_platform or not shop_id:
                out.append(platform)
            if shop_id:
                out.append(await self._share(platform, shop_id))
        return out

    async def _platform(self, downstream: str) -> Throttle:
        settings = await self._kept.load(downstream)
        _, factor = await self._buckets.settings(downstream)
        return Throttle(downstream, "", settings, factor)

    async def _share(self, platform: Throttle, shop_id: str) -> Throttle:
        """A shop's share: its weight against the other shops running now."""
        weights = await self._stored.weights(platform.downstream)
        weight = weights.get(shop_id, 1.0)
        running = await self._buckets.running(platform.downstream)
        others = sum(w for shop, w in running.items() if shop != shop_id)
        rate = platform.effective_rate * weight / (others + weight)
        return Throttle(
            platform.downstream, shop_id, platform.settings, platform.factor, weight, rate
        )

    async def update_weight(
        self,
        downstream: str,
        shop_id: str,
        weight: float,
        etag: str,
        key: RequestKey | None = None,
    ) -> Throttle:
        """Set a shop's weight in a downstream's shares."""
        violations = _downstream_violations(downstream)
        if not math.isfinite(weight) or not 0 < weight <= MAX_WEIGHT:
            violations.append(FieldViolation("setting.weight", "must be > 0 and at most 1,000"))
        require(violations)

        async def work() -> dict[str, Any]:
            current = await self._share(await self._platform(downstream), shop_id)
            if etag and etag != current.etag:
                raise Aborted(
                    f"the {downstream} share of {shop_id} changed meanwhile; get it again",
                    reason="ETAG_MISMATCH",
                )
            name = bucket_name(downstream, shop_id)
            await self._stored.save_weight(
                name,
                weight,
                current.weight,
                shop_id,
                f"throttles/{downstream}",
                call_context.actor.get(),
                self._clock(),
            )
            await self._buckets.configure_weight(downstream, shop_id, weight)
            return {"weight": weight}

        await self._once(shop_id, key, work)
        return await self._share(await self._platform(downstream), shop_id)

    async def update(
        self,
        downstream: str,
        rate: float | None,
        capacity: int | None,
        etag: str,
        key: RequestKey | None = None,
    ) -> Throttle:
        violations = _downstream_violations(downstream)
        if rate is not None and (not math.isfinite(rate) or rate <= 0 or rate > 1_000_000):
            violations.append(
                FieldViolation("setting.rate_per_second", "must be > 0 and at most 1,000,000")
            )
        if capacity is not None and not 1 <= capacity <= 1_000_000:
            violations.append(FieldViolation("setting.burst", "must be 1-1,000,000"))
        require(violations)

        async def work() -> dict[str, Any]:
            changed = await self._update(downstream, rate, capacity, etag)
            return {
                "rate": changed.settings.rate,
                "capacity": changed.settings.capacity,
                "factor": changed.factor,
            }

        answer = await self._once("", key, work)
        settings = BucketSettings(rate=answer["rate"], capacity=int(answer["capacity"]))
        return Throttle(downstream, "", settings, float(answer["factor"]))

    async def _once(
        self, shop_id: str, key: RequestKey | None, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Through the request log: a retry gets the first answer back."""
        if self._uow is None:
            return await work()
        return await remembered(self._uow, shop_id, key, work)

    async def _update(
        self,
        downstream: str,
        rate: float | None,
        capacity: int | None,
        etag: str,
    ) -> Throttle:
        name = downstream
        current = await self._kept.load(name)
        _, factor = await self._buckets.settings(name)
        now = Throttle(downstream, "", current, factor)
        if etag and etag != now.etag:
            raise Aborted(
                f"the {downstream} throttle changed meanwhile; get it again", reason="ETAG_MISMATCH"
            )
        new = BucketSettings(
            rate=current.rate if rate is None else rate,
            capacity=current.capacity if capacity is None else capacity,
        )
        # The database first, with its audit entry: then the cache, which a
        # decision that finds it gone refills from the database.
        await self._stored.save(
            name,
            new,
            current,
            "",
            f"throttles/{downstream}",
            call_context.actor.get(),
            self._clock(),
        )
        await self._buckets.configure(name, new)
        return Throttle(downstream, "", new, factor)


def _downstream_violations(downstream: str) -> list[FieldViolation]:
    if downstream in DOWNSTREAMS:
        return []
    return [FieldViolation("setting.downstream", "AUDIENCE, BENEFIT or NOTIFICATION")]
