"""The downstream throttles' settings, kept in the database (their source of
truth); the buckets cache them and read them back from here when their
cache is gone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.persistence.audit_log import record_change
from server.persistence.tables import throttle_settings
from server.persistence.upserts import upsert
from server.throttle.buckets import UNSET, BucketSettings
from server.throttle.downstreams import DEFAULTS, is_downstream

_t = throttle_settings.c


class SqlThrottleSettings:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, name: str) -> BucketSettings | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_t.rate, _t.capacity).where(_t.name == name))).first()
        return None if row is None else BucketSettings(float(row.rate), int(row.capacity))

    async def weights(self, downstream: str) -> dict[str, float]:
        """The weights configured for shops' shares of a downstream, by shop."""
        head = f"{downstream}:"
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(_t.name, _t.weight).where(
                    _t.name.startswith(head, autoescape=True), _t.weight.is_not(None)
                )
            )
            return {row.name[len(head) :]: float(row.weight) for row in rows}

    async def save_weight(
        self,
        name: str,
        weight: float,
        before: float,
        shop_id: str,
        resource: str,
        actor: str,
        at: datetime,
    ) -> None:
        """A shop's weight in a downstream's shares and its audit entry, in one
        transaction."""
        row = {
            "name": name,
            "rate": 0.0,
            "capacity": 0,
            "weight": weight,
            "update_by": actor,
            "update_time": at,
        }
        async with self._engine.begin() as conn:
            await upsert(conn, throttle_settings, row, ["name"])
            await record_change(conn, shop_id, resource, {"weight": before}, {"weight": weight})

    async def put(self, name: str, settings: BucketSettings, actor: str, at: datetime) -> None:
        async with self._engine.begin() as conn:
            await _put(conn, name, settings, actor, at)

    async def save(
        self,
        name: str,
        settings: BucketSettings,
        before: BucketSettings,
        shop_id: str,
        resource: str,
        actor: str,
        at: datetime,
    ) -> None:
        """The new settings and their audit entry, in one transaction."""
        async with self._engine.begin() as conn:
            await _put(conn, name, settings, actor, at)
            await record_change(
                conn,
                shop_id,
                resource,
                {"rate_per_second": before.rate, "burst": before.capacity},
                {"rate_per_second": settings.rate, "burst": settings.capacity},
            )


async def adopt(store: SqlThrottleSettings, cached: dict[str, BucketSettings], at: datetime) -> int:
    """Settings a version before this one kept only in Redis become the
    database's, where it has none yet: an upgrade keeps the configured rates."""
    adopted = 0
    for name, settings in cached.items():
        if await store.get(name) is None:
            await store.put(name, settings, "upgrade", at)
            adopted += 1
    return adopted


class KeptThrottleSettings:
    """The buckets' source of settings: a downstream's bucket reads the
    database (or the deployment's default); other buckets (callers' rate
    limits, from the callers file) are not kept here."""

    def __init__(self, store: SqlThrottleSettings) -> None:
        self._store = store

    def keeps(self, name: str) -> bool:
        return is_downstream(name)

    async def load(self, name: str) -> BucketSettings:
        stored = await self._store.get(name)
        if stored is not None:
            return stored
        return DEFAULTS.get(name, UNSET)

    async def weights(self, name: str) -> dict[str, float]:
        return await self._store.weights(name)


async def _put(
    conn: AsyncConnection, name: str, settings: BucketSettings, actor: str, at: datetime
) -> None:
    row = {
        "name": name,
        "rate": settings.rate,
        "capacity": settings.capacity,
        "update_by": actor,
        "update_time": at,
    }
    await upsert(conn, throttle_settings, row, ["name"])
