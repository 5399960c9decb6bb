"""Members' waits for event-triggered plans, written in the transaction that
takes their events (docs/triggers.md): an accepted event starts its waits
and cancels the waits its type cancels, or neither happens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain import triggers
from domain.calculators import Trigger
from domain.member_events import EventType, MemberEvent
from domain.plan import Plan
from domain.triggers import Told, Wait, WaitState
from server.persistence.tables import member_events, trigger_waits

_w, _e = trigger_waits.c, member_events.c
# One wait by its key, its parts bound per row ("p", "m", "e").
_BY_KEY = and_(
    _w.plan_id == bindparam("p"), _w.member_id == bindparam("m"), _w.event_id == bindparam("e")
)


async def follow_events(
    conn: AsyncConnection,
    shop_id: str,
    taken: Sequence[MemberEvent],
    plans: Sequence[tuple[Plan, Trigger]],
) -> None:
    """Start the waits these taken events start, and cancel the waiting ones
    their types cancel. The events are in `member_events` already, so an
    unless-event told before its triggering event (out of order) is found."""
    if not plans or not taken:
        return
    starting = {t.event for _, t in plans}
    unless = {t.unless for _, t in plans if t.unless is not None}
    starters = [e for e in taken if e.type in starting]
    told = await _told(conn, shop_id, {e.member_id for e in starters}, unless)
    waits = triggers.waits_for(shop_id, starters, plans, told)
    if waits:
        await conn.execute(insert(trigger_waits), [_row(w) for w in waits])
    cancelling = [e for e in taken if e.type in unless]
    if cancelling:
        await _cancel(conn, shop_id, cancelling, plans)


async def _told(
    conn: AsyncConnection, shop_id: str, members: set[str], types: set[EventType]
) -> list[Told]:
    if not members or not types:
        return []
    rows = await conn.execute(
        select(_e.member_id, _e.event_type, _e.occur_time, _e.event_id).where(
            _e.shop_id == shop_id,
            _e.member_id.in_(members),
            _e.event_type.in_([t.value for t in types]),
        )
    )
    return [Told(r.member_id, EventType(r.event_type), r.occur_time, r.event_id) for r in rows]


async def _cancel(
    conn: AsyncConnection,
    shop_id: str,
    events: Sequence[MemberEvent],
    plans: Sequence[tuple[Plan, Trigger]],
) -> None:
    """The members' waiting waits, read once, each cancelled by the first of
    these events that cancels it."""
    unless = {p.plan_id: t.unless for p, t in plans if t.unless is not None}
    rows = await conn.execute(
        select(_w.plan_id, _w.member_id, _w.event_id, _w.event_time, _w.due_time).where(
            _w.shop_id == shop_id,
            _w.member_id.in_({e.member_id for e in events}),
            _w.state == WaitState.WAITING.value,
            _w.plan_id.in_(unless),
        )
    )
    told = [
        Told(e.member_id, e.type, e.occur_time, e.event_id)
        for e in events
        if e.type is not None and e.occur_time is not None
    ]
    cancelled = []
    for r in rows:
        wait = Wait(r.plan_id, r.member_id, r.event_id, shop_id, r.event_time, r.due_time)
        by = next((t for t in told if triggers.cancels(wait, t, unless[r.plan_id])), None)
        if by is not None:
            cancelled.append(
                {"p": r.plan_id, "m": r.member_id, "e": r.event_id, "why": triggers.why(by)}
            )
    if cancelled:
        await conn.execute(
            update(trigger_waits)
            .where(_BY_KEY, _w.state == WaitState.WAITING.value)
            .values(state=WaitState.CANCELLED.value, reason=bindparam("why")),
            cancelled,
        )


class SqlTriggerWaits:
    """The sweep's side (server/usecases/trigger_sweep.py), in its unit of work."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def due(self, now: datetime, limit: int) -> list[Wait]:
        query = (
            select(trigger_waits)
            .where(_w.state == WaitState.WAITING.value, _w.due_time <= now)
            .order_by(_w.due_time)
            .limit(limit)
        )
        if self._conn.dialect.name == "postgresql":
            # Replicas sweeping at once each take their own waits.
            query = query.with_for_update(skip_locked=True)
        rows = await self._conn.execute(query)
        return [
            Wait(
                r.plan_id,
                r.member_id,
                r.event_id,
                r.shop_id,
                r.event_time,
                r.due_time,
                WaitState(r.state),
                r.reason or "",
            )
            for r in rows
        ]

    async def launched(self, waits: Sequence[Wait], run_id: str) -> None:
        await self._settle(waits, WaitState.LAUNCHED, run_id, None)

    async def dropped(self, waits: Sequence[Wait], reason: str) -> None:
        await self._settle(waits, WaitState.DROPPED, None, reason)

    async def _settle(
        self, waits: Sequence[Wait], state: WaitState, run_id: str | None, reason: str | None
    ) -> None:
        if not waits:
            return
        await self._conn.execute(
            update(trigger_waits)
            .where(_BY_KEY)
            .values(state=state.value, run_id=run_id, reason=reason),
            [{"p": w.plan_id, "m": w.member_id, "e": w.event_id} for w in waits],
        )


def _row(w: Wait) -> dict[str, Any]:
    return {
        "plan_id": w.plan_id,
        "member_id": w.member_id,
        "event_id": w.event_id,
        "shop_id": w.shop_id,
        "event_time": w.event_time,
        "due_time": w.due_time,
        "state": w.state.value,
        "run_id": None,
        "reason": w.reason or None,
    }
