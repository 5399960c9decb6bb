"""Members' events in, a member's data erased, and everyone's purged after
its retention (docs/outcomes.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from domain import member_events as ev
from domain import triggers
from domain.downstream_ports import AudienceDirectory
from domain.member_events import MAX_EVENTS, EventOutcome, MemberEvent
from domain.plan import Plan
from domain.ports import Clock, RequestKey, UnitOfWork
from server.persistence.member_data import MemberData
from server.persistence.member_events import MemberEventStore
from server.usecases.once import remembered


class LivePlans(Protocol):
    async def live(self, shop_id: str) -> list[Plan]:
        """The shop's active and scheduled plans."""
        ...


@dataclass(frozen=True)
class Retention:
    """How long each store keeps its rows; 0: for ever."""

    outcomes: timedelta = timedelta(days=365)
    events: timedelta = timedelta(days=365)
    orders: timedelta = timedelta(days=365)


class MemberDataUseCases:
    def __init__(
        self,
        events: MemberEventStore,
        audience: AudienceDirectory,
        plans: LivePlans,
        data: MemberData,
        uow: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
        clock: Clock,
        retention: Retention = Retention(),
    ) -> None:
        self._events = events
        self._audience = audience
        self._plans = plans
        self._data = data
        self._uow = uow
        self._clock = clock
        self.retention = retention

    async def record(self, shop_id: str, events: Sequence[MemberEvent]) -> list[EventOutcome]:
        """Each event taken or refused on its own; a replayed id changes
        nothing. The audience system is asked once a batch which members it
        knows: a stranger's event is refused alone (if it cannot be asked,
        the call fails whole and may be sent again). Event-triggered plans'
        waits start and end with the events that start or cancel them."""
        assert len(events) <= MAX_EVENTS  # the servicer refuses bigger batches
        now = self._clock.now()
        named = list(dict.fromkeys(e.member_id for e in events if ev.refusal(e, now) is None))
        known = await self._audience.known(shop_id, named) if named else set()
        strangers = {m for m in named if m not in known}
        triggered = triggers.triggered(await self._plans.live(shop_id))
        return await self._events.record(shop_id, events, now, strangers, triggered)

    async def erase(self, shop_id: str, member_id: str, key: RequestKey | None) -> dict[str, int]:
        """Idempotent: a second erasure finds nothing; with a request id, a
        retry answers the first answer."""

        async def work() -> dict[str, int]:
            return await self._data.erase(shop_id, member_id)

        return await remembered(self._uow, shop_id, key, work)  # type: ignore[arg-type]

    async def purge(self) -> dict[str, int]:
        """Rows older than their retention go (a background task calls this)."""
        now = self._clock.now()

        def cutoff(kept: timedelta) -> datetime:
            return now - kept if kept else datetime.min.replace(tzinfo=UTC)

        r = self.retention
        return await self._data.purge(cutoff(r.outcomes), cutoff(r.events), cutoff(r.orders))
