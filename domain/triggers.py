"""Members' waits for event-triggered plans (docs/triggers.md): which events
start a wait, which cancel one. Pure; the store keeps the waits
(server/persistence/trigger_waits.py) and the sweep acts on the due ones
(server/usecases/trigger_sweep.py).

A plan whose execution time is `@on EVENT after DELAY unless OTHER` waits,
for each EVENT of a member, until the event's time plus the delay, once per
(plan, member, triggering event); a member's OTHER event that happened in
between (at or after the triggering event, before the due time) cancels it,
whichever of the two was told first.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from domain import calculators
from domain.calculators import Trigger
from domain.member_events import EventType, MemberEvent
from domain.plan import Plan
from domain.plan_calendar import PlanCalendar


class WaitState(enum.StrEnum):
    WAITING = "waiting"
    LAUNCHED = "launched"  # into a run, when due
    CANCELLED = "cancelled"  # by the member's unless-event
    DROPPED = "dropped"  # due while its plan was no longer live


@dataclass(frozen=True)
class Wait:
    plan_id: str
    member_id: str
    event_id: str
    shop_id: str
    event_time: datetime
    due_time: datetime
    state: WaitState = WaitState.WAITING
    reason: str = ""


@dataclass(frozen=True)
class Told:
    """An event already taken, as a cancellation needs it."""

    member_id: str
    type: EventType
    occur_time: datetime
    event_id: str


def trigger_of(plan: Plan) -> Trigger | None:
    """The plan's event trigger, if members' events fire it."""
    text = plan.spec.time.execution
    return calculators.parse(text).trigger if text.startswith("@") else None


def triggered(plans: Iterable[Plan]) -> list[tuple[Plan, Trigger]]:
    return [(p, t) for p in plans if (t := trigger_of(p)) is not None]


def cancels(wait: Wait, told: Told, unless: EventType | None) -> bool:
    """Whether a member's event cancels the wait: the plan's unless-event,
    of the same member, at or after the triggering event and before due."""
    return (
        told.type is unless
        and told.member_id == wait.member_id
        and told.event_id != wait.event_id
        and wait.event_time <= told.occur_time < wait.due_time
    )


def waits_for(
    shop_id: str,
    events: Sequence[MemberEvent],
    plans: Sequence[tuple[Plan, Trigger]],
    told: Sequence[Told] = (),
) -> list[Wait]:
    """The waits these taken events start: one per event and plan whose
    trigger names the event's type and whose time lets it act at the due
    time; born cancelled when one of `told` (the members' events, this
    batch's included) already cancels it."""
    out = []
    # One calendar per plan for the batch (a live plan's anchor is its
    # publish time, whatever the event): it keeps the windows it has read.
    calendars: dict[str, PlanCalendar] = {}
    for event in events:
        assert event.type is not None and event.occur_time is not None
        for plan, trigger in plans:
            if trigger.event is not event.type:
                continue
            due = trigger.due(event.occur_time)
            calendar = calendars.get(plan.plan_id)
            if calendar is None:
                calendar = calendars[plan.plan_id] = PlanCalendar.of(plan, due)
            if not calendar.allowed(due):
                continue
            wait = Wait(
                plan.plan_id, event.member_id, event.event_id, shop_id, event.occur_time, due
            )
            by = next((t for t in told if cancels(wait, t, trigger.unless)), None)
            if by is not None:
                wait = replace(wait, state=WaitState.CANCELLED, reason=why(by))
            out.append(wait)
    return out


def why(told: Told) -> str:
    """A cancelled wait's reason: the event that cancelled it."""
    return f"{told.type.value}:{told.event_id}"
