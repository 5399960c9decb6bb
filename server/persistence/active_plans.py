"""A shop's live plans (active, or scheduled and coming into effect by their
time), for the shopper's side, which asks on every page.

Cached per process and shop, valid until the shop's plans change: every
plan write committed through a unit of work drops the shop's entry here and
bumps the shop's version for every replica (`PlanVersions`, in Redis); an
entry is used only while the version it was read under is current, so a
change made on any replica shows on the next page everywhere. What the
calendar says about a plan at a given time is kept with the entry until that
answer may change (`Effect.holds_at`).

Without a shared version (no Redis, or Redis away) an entry is read again
after `ttl` seconds, so another replica's write shows within it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.plan import Plan, PlanState
from domain.plan_calendar import Effect, PlanCalendar
from server.persistence.plan_repository import plan_from_row
from server.persistence.tables import plans

LIVE_STATES = (PlanState.ACTIVE.value, PlanState.SCHEDULED.value)
# With shared versions, an entry is still read again after this long: the
# bump of a write made while Redis was away cannot be seen.
VERSIONED_TTL = 30.0


class PlanVersions(Protocol):
    async def bump(self, shop_ids: set[str]) -> None:
        """A committed write changed these shops' plans."""
        ...

    async def current(self, shop_id: str) -> int | None:
        """The shop's current version; None when it cannot be known now."""
        ...


@dataclass
class _Entry:
    loaded: float
    plans: list[Plan]
    version: int | None = None
    # Per plan id: its calendar's effect answer, kept until it may change.
    effects: dict[str, Effect] = field(default_factory=dict)


class ActivePlans:
    def __init__(
        self,
        engine: AsyncEngine,
        ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        versions: PlanVersions | None = None,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._monotonic = monotonic
        self._versions = versions
        self._entries: dict[str, _Entry] = {}
        self._invalidations = 0

    async def changed(self, shop_ids: set[str]) -> None:
        """A committed transaction wrote these shops' plans: drop them here,
        and tell every replica."""
        self._invalidations += 1
        for shop_id in shop_ids:
            self._entries.pop(shop_id, None)
        if self._versions is not None:
            await self._versions.bump(shop_ids)

    async def live(self, shop_id: str) -> list[Plan]:
        """The shop's live plans, as of the last change any replica made."""
        return list((await self._entry(shop_id)).plans)

    async def timely(self, shop_id: str, now: datetime) -> list[tuple[Plan, Effect]]:
        """The shop's live plans, each with whether its effects hold at `now`
        by its time (its calendar's answer), or when they next do."""
        entry = await self._entry(shop_id)
        out = []
        for plan in entry.plans:
            known = entry.effects.get(plan.plan_id)
            if known is None or not known.holds_at(now):
                known = PlanCalendar.of(plan, now).executing(now)
                entry.effects[plan.plan_id] = known
            out.append((plan, known))
        return out

    async def _entry(self, shop_id: str) -> _Entry:
        entry = self._entries.get(shop_id)
        # Asked before reading: a write committing meanwhile bumps it after.
        version = None if self._versions is None else await self._versions.current(shop_id)
        if entry is not None:
            age = self._monotonic() - entry.loaded
            if version is None:
                if age < self._ttl:
                    return entry
            elif version == entry.version and age < VERSIONED_TTL:
                return entry
        loaded, invalidations = self._monotonic(), self._invalidations
        query = (
            select(plans)
            .where(plans.c.shop_id == shop_id, plans.c.state.in_(LIVE_STATES))
            .order_by(plans.c.create_time, plans.c.plan_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        fresh = _Entry(loaded, [plan_from_row(r) for r in rows], version)
        if entry is not None:  # unchanged plans keep what was worked out
            kept = {p.plan_id: p.revision for p in entry.plans}
            fresh.effects = {
                p.plan_id: entry.effects[p.plan_id]
                for p in fresh.plans
                if kept.get(p.plan_id) == p.revision and p.plan_id in entry.effects
            }
        # A plan write committed while reading may not be in what was read:
        # answer with it this once, but keep nothing.
        if self._invalidations == invalidations:
            self._entries[shop_id] = fresh
        return fresh
