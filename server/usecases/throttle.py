"""Throttle settings: the rate of each downstream system, for every replica."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import Aborted, FieldViolation, require
from domain.ports import RequestKey, UnitOfWork
from server.persistence.audit_log import AuditLog
from server.throttle.buckets import Buckets, BucketSettings
from server.usecases.once import remembered

DOWNSTREAMS = ("audience", "benefit", "notification")
# What a fresh deployment allows per second, before an operator says otherwise.
DEFAULTS = {
    "audience": BucketSettings(rate=5000.0, capacity=5000),
    "benefit": BucketSettings(rate=1000.0, capacity=5000),
    "notification": BucketSettings(rate=1000.0, capacity=5000),
}


def bucket_name(downstream: str, shop_id: str = "") -> str:
    return f"{downstream}:{shop_id}" if shop_id else downstream


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
        audit: AuditLog | None = None,
        uow: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self._buckets = buckets
        self._clock = clock
        self._audit = audit
        self._uow = uow  # the request log: a retry replays the first answer

    async def get(self, shop_id: str = "", with_platform: bool = True) -> list[Throttle]:
        """The platform-wide settings (unless left out) and the shop's share."""
        out = []
        for downstream in DOWNSTREAMS:
            names = [downstream] if with_platform or not shop_id else []
            names += [bucket_name(downstream, shop_id)] if shop_id else []
            for name in names:
                settings, factor = await self._buckets.settings(name)
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
        current, factor = await self._buckets.settings(name)
        now = Throttle(downstream, shop_id, current, factor)
        if etag and etag != now.etag:
            raise Aborted(
                f"the {downstream} throttle changed meanwhile; get it again", reason="ETAG_MISMATCH"
            )
        new = BucketSettings(
            rate=current.rate if rate is None else rate,
            capacity=current.capacity if capacity is None else capacity,
        )
        await self._buckets.configure(name, new)
        if self._audit is not None:
            # The buckets live in Redis, not in the database: the entry
            # follows the change, in a transaction of its own.
            await self._audit.record(
                shop_id,
                f"throttles/{downstream}",
                before={"rate_per_second": current.rate, "burst": current.capacity},
                after={"rate_per_second": new.rate, "burst": new.capacity},
            )
        return Throttle(downstream, shop_id, new, factor)
