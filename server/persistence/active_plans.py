"""A shop's live plans (active, or scheduled and coming into effect by their
time), for the shopper's side, which asks on every page.

Cached per process and shop. Correct after writes: every plan write made
through this process drops the shop's entry when its transaction commits
(SqlUnitOfWork calls `invalidate`), so the process that paused or ended a
plan never shows it again. A write made by another replica is seen within
`ttl` seconds, when the entry is read again from the (shop, state) index.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.plan import Plan, PlanState
from domain.plan_calendar import Effect, PlanCalendar
from server.persistence.plan_repository import plan_from_row
from server.persistence.tables import plans

LIVE_STATES = (PlanState.ACTIVE.value, PlanState.SCHEDULED.value)


@dataclass
class _Entry:
    loaded: float
    plans: list[Plan]
    # Per plan id: its calendar's effect answer, kept until it may change.
    effects: dict[str, Effect] = field(default_factory=dict)


class ActivePlans:
    def __init__(
        self, engine: AsyncEngine, ttl: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._monotonic = monotonic
        self._entries: dict[str, _Entry] = {}
        self._invalidations = 0

    def invalidate(self, shop_ids: set[str]) -> None:
        self._invalidations += 1
        for shop_id in shop_ids:
            self._entries.pop(shop_id, None)

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
        if entry is not None and self._monotonic() - entry.loaded < self._ttl:
            return entry
        loaded, invalidations = self._monotonic(), self._invalidations
        query = (
            select(plans)
            .where(plans.c.shop_id == shop_id, plans.c.state.in_(LIVE_STATES))
            .order_by(plans.c.create_time, plans.c.plan_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        fresh = _Entry(loaded, [plan_from_row(r) for r in rows])
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
