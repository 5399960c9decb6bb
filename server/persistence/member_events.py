"""Members' events and the orders they make, written a batch per transaction
(RecordMemberEvents): replayed event ids change nothing, and each event is
taken or refused on its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import member_events as ev
from domain.calculators import Trigger
from domain.member_events import EventOutcome, EventResult, MemberEvent, OrderState
from domain.plan import Plan
from server.persistence.audit_log import record_change
from server.persistence.tables import member_events, orders
from server.persistence.trigger_waits import follow_events

_e, _o = member_events.c, orders.c


class MemberEventStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(
        self,
        shop_id: str,
        events: Sequence[MemberEvent],
        now: datetime,
        strangers: Collection[str] = (),
        triggered: Sequence[tuple[Plan, Trigger]] = (),
    ) -> list[EventOutcome]:
        """Each event's outcome, in order; the events of `strangers` (members
        the audience system does not know) refused; the waits of the
        `triggered` plans the taken events start or cancel, with them. Two
        batches racing with one event id or one new order: the loser's
        transaction fails on the key and is taken again, when it finds the
        winner's rows."""
        try:
            return await self._record(shop_id, events, now, strangers, triggered)
        except IntegrityError:
            return await self._record(shop_id, events, now, strangers, triggered)

    async def _record(
        self,
        shop_id: str,
        events: Sequence[MemberEvent],
        now: datetime,
        strangers: Collection[str],
        triggered: Sequence[tuple[Plan, Trigger]],
    ) -> list[EventOutcome]:
        results: list[EventOutcome | None] = [
            ev.refusal(e, now) or (ev.unknown_member(e) if e.member_id in strangers else None)
            for e in events
        ]
        valid = [e for e, r in zip(events, results, strict=True) if r is None]
        async with self._engine.begin() as conn:
            ids = [e.event_id for e in valid]
            seen = set(
                (
                    await conn.execute(
                        select(_e.event_id).where(_e.shop_id == shop_id, _e.event_id.in_(ids))
                    )
                ).scalars()
            )
            named = {o.order_id for e in valid if (o := e.order or e.refund) is not None}
            query = select(_o.order_id, _o.member_id, _o.amount_minor, _o.refunded_minor).where(
                _o.shop_id == shop_id, _o.order_id.in_(named)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            state = {
                r.order_id: OrderState(r.member_id, r.amount_minor, r.refunded_minor)
                for r in await conn.execute(query)
            }
            before = {k: v.refunded_minor for k, v in state.items()}
            taken: list[MemberEvent] = []
            for i, event in enumerate(events):
                if results[i] is not None:
                    continue
                if event.event_id in seen:
                    results[i] = EventOutcome(event.event_id, EventResult.DUPLICATE)
                    continue
                seen.add(event.event_id)
                results[i] = ev.apply(event, state)
                if results[i].result is EventResult.ACCEPTED:  # type: ignore[union-attr]
                    taken.append(event)
            if taken:
                await conn.execute(insert(member_events), [_event_row(shop_id, e) for e in taken])
                await follow_events(conn, shop_id, taken, triggered)
            # An order paid and refunded in this batch goes in with its refunds.
            paid = [_order_row(shop_id, e, state) for e in taken if e.order is not None]
            if paid:
                await conn.execute(insert(orders), paid)
            refunded = [
                {"s": shop_id, "o": order_id, "r": s.refunded_minor}
                for order_id, s in state.items()
                if order_id in before and s.refunded_minor != before[order_id]
            ]
            if taken:  # one audit entry a batch: how many events it took
                counts = Counter(r.result.value for r in results if r is not None)
                await record_change(conn, shop_id, "member_events", None, dict(counts))
            if refunded:
                await conn.execute(
                    update(orders)
                    .where(_o.shop_id == bindparam("s"), _o.order_id == bindparam("o"))
                    .values(refunded_minor=bindparam("r")),
                    refunded,
                )
        return [r for r in results if r is not None]


def _event_row(shop_id: str, e: MemberEvent) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if e.order is not None:
        detail = {
            "order_id": e.order.order_id,
            "store_id": e.order.store_id,
            "amount_minor": e.order.amount_minor,
            "currency": e.order.currency,
        }
    elif e.refund is not None:
        detail = {"order_id": e.refund.order_id, "amount_minor": e.refund.amount_minor}
    elif e.item_id:
        detail = {"item_id": e.item_id}
    elif e.level:
        detail = {"level": e.level}
    assert e.type is not None and e.occur_time is not None
    return {
        "shop_id": shop_id,
        "event_id": e.event_id,
        "member_id": e.member_id,
        "event_type": e.type.value,
        "occur_time": e.occur_time,
        "detail": detail,
    }


def _order_row(shop_id: str, e: MemberEvent, state: dict[str, OrderState]) -> dict[str, Any]:
    assert e.order is not None and e.occur_time is not None
    return {
        "shop_id": shop_id,
        "order_id": e.order.order_id,
        "member_id": e.member_id,
        "store_id": e.order.store_id,
        "currency": e.order.currency,
        "amount_minor": e.order.amount_minor,
        "refunded_minor": state[e.order.order_id].refunded_minor,
        "paid_time": e.occur_time,
    }
