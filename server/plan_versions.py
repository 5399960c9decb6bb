"""Which version of a shop's plans is current, shared by every replica.

The shopper's side caches a shop's live plans in each process
(persistence/active_plans.py). Every committed plan write bumps the shop's
version in Redis, and a cached entry is used only while the version it was
read under is still the current one: a change made on any replica is seen by
every other one on its next page, with no timer. A key per shop (hash-tagged,
so a Redis Cluster routes each to one slot); a flushed key reads as 0, which
no entry carries after a bump, so a flush only costs a reload.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from server.redis_store import RedisClient

log = logging.getLogger("custops.plans")


class RedisPlanVersions:
    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._failing = False

    def _key(self, shop_id: str) -> str:
        return f"{self._prefix}:plans:{{{shop_id}}}:version"

    async def bump(self, shop_ids: set[str]) -> None:
        """After a committed write: a new version for each shop. Best effort:
        with Redis away, other replicas' entries expire on their own (see
        ActivePlans)."""
        try:
            for shop_id in shop_ids:
                await self._redis.incr(self._key(shop_id))
        except (RedisError, OSError) as exc:
            self._complain(exc)
            return
        self._recovered()

    async def current(self, shop_id: str) -> int | None:
        """The shop's current version; None when Redis cannot say."""
        try:
            raw = await self._redis.get(self._key(shop_id))
        except (RedisError, OSError) as exc:
            self._complain(exc)
            return None
        self._recovered()
        return int(raw or 0)

    def _complain(self, exc: Exception) -> None:
        if not self._failing:  # one line per outage, not one per page
            self._failing = True
            log.warning(
                "plan versions unreadable in Redis; cached plans now expire by time",
                extra={"error": exc.__class__.__name__},
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("plan versions readable in Redis again")
