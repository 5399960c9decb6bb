"""Throttle settings: the rate of each downstream system, for every replica.

The database holds them (their source of truth); the buckets (Redis, or the
process) cache them and read them back from it when their cache is gone.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
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


@dataclass(frozen=True)
class Throttle:
    downstream: str
    shop_id: str
    settings: BucketSettings
    factor: float

    @property
    def effective_rate(self) -> float:
        return self.settings.rate * self.factor

    @property
    def etag(self) -> str:
        raw = f"{self.settings.rate}|{self.settings.capacity}".encode()
        return hashlib.sha256(raw).hexdigest()[:12]


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
            names = [downstream] if with_platform or not shop_id else []
            names += [bucket_name(downstream, shop_id)] if shop_id else []
            for name in names:
                settings = await self._kept.load(name)
                _, factor = await self._buckets.settings(name)
                out.append(Throttle(downstream, shop_id if ":" in name else "", settings, factor))
        return out

    async def update(
        self,
        downstream: str,
        shop_id: str,
        rate: float | None,
        capacity: int | None,
        etag: str,
        key: RequestKey | None = None,
    ) -> Throttle:
        violations = []
        if downstream not in DOWNSTREAMS:
            violations.append(
                FieldViolation("setting.downstream", "AUDIENCE, BENEFIT or NOTIFICATION")
            )
        if rate is not None and (not math.isfinite(rate) or rate <= 0 or rate > 1_000_000):
            violations.append(
                FieldViolation("setting.rate_per_second", "must be > 0 and at most 1,000,000")
            )
        if capacity is not None and not 1 <= capacity <= 1_000_000:
            violations.append(FieldViolation("setting.burst", "must be 1-1,000,000"))
        require(violations)

        async def work() -> dict[str, Any]:
            changed = await self._update(downstream, shop_id, rate, capacity, etag)
            return {
                "rate": changed.settings.rate,
                "capacity": changed.settings.capacity,
                "factor": changed.factor,
            }

        if self._uow is not None and key is not None:
            answer = await remembered(self._uow, shop_id, key, work)
        else:
            answer = await work()
        settings = BucketSettings(rate=answer["rate"], capacity=int(answer["capacity"]))
        return Throttle(downstream, shop_id, settings, float(answer["factor"]))

    async def _update(
        self,
        downstream: str,
        shop_id: str,
        rate: float | None,
        capacity: int | None,
        etag: str,
    ) -> Throttle:
        name = bucket_name(downstream, shop_id)
        current = await self._kept.load(name)
        _, factor = await self._buckets.settings(name)
        now = Throttle(downstream, shop_id, current, factor)
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
            shop_id,
            f"throttles/{downstream}",
            call_context.actor.get(),
            self._clock(),
        )
        await self._buckets.configure(name, new)
        return Throttle(downstream, shop_id, new, factor)
