"""What front offices say happened to members — orders paid and refunded,
carts, visits, follows, registrations, level changes — and the rules each
event must meet on its own (docs/outcomes.md). A bad event is refused
alone; the rest of its batch goes in."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_EVENTS = 500
# An event from the future beyond this skew is a clock problem, not news.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# An event older than this is refused: too late to react to, and a quarter
# is room enough to send a backlog of orders for a plan's measured effect.
MAX_EVENT_AGE = timedelta(days=90)
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_CURRENCY = re.compile(r"^[A-Z]{3}\Z")


class EventType(enum.StrEnum):
    ORDER_PAID = "order_paid"
    ORDER_REFUNDED = "order_refunded"
    CARTED = "carted"
    BROWSED = "browsed"
    FOLLOWED = "followed"
    REGISTERED = "registered"
    LEVEL_CHANGED = "level_changed"


# What an event of a member the audience system does not know is refused with.
UNKNOWN_MEMBER = "UNKNOWN_MEMBER"


class EventResult(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # its id was taken before: nothing changed
    REFUSED = "refused"


@dataclass(frozen=True)
class PaidOrder:
    order_id: str
    store_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Refund:
    order_id: str
    amount_minor: int


@dataclass(frozen=True)
class MemberEvent:
    event_id: str
    member_id: str
    type: EventType | None  # None: a type this platform does not know
    occur_time: datetime | None
    order: PaidOrder | None = None
    refund: Refund | None = None
    item_id: str = ""  # CARTED, BROWSED: the product, when told
    level: str = ""  # LEVEL_CHANGED: the new level


@dataclass(frozen=True)
class EventOutcome:
    event_id: str
    result: EventResult
    reason: str = ""
    message: str = ""


@dataclass
class OrderState:
    """An order as the batch sees it: what was paid, what is refunded so far."""

    member_id: str
    amount_minor: int
    refunded_minor: int


def refusal(event: MemberEvent, now: datetime) -> EventOutcome | None:
    """Why the event cannot be taken, from the event alone; None if it can."""
    allowed = ", ".join(t.name for t in EventType)
    problems = []
    if not _EVENT_ID.match(event.event_id):
        problems.append("event_id: 1-128 letters, digits or '._:-'")
    if not _ID.match(event.member_id):
        problems.append("member_id: 1-64 letters, digits or '_.:-'")
    if event.type is None:
        problems.append(f"type: one of {allowed}")
    if event.occur_time is None:
        problems.append("occur_time: required")
    elif event.occur_time > now + MAX_CLOCK_SKEW:
        problems.append(f"occur_time: not more than {_minutes(MAX_CLOCK_SKEW)} in the future")
    elif event.occur_time < now - MAX_EVENT_AGE:
        problems.append(f"occur_time: at most {MAX_EVENT_AGE.days} days ago")
    if event.item_id and not _ID.match(event.item_id):
        problems.append("item_id: 1-64 letters, digits or '_.:-'")
    if event.type is EventType.LEVEL_CHANGED and not _ID.match(event.level):
        problems.append("level: the new level, 1-64 letters, digits or '_.:-'")
    if event.type is EventType.ORDER_PAID:
        order = event.order
        if order is None:
            problems.append("order: required for ORDER_PAID")
        else:
            if not _ID.match(order.order_id):
                problems.append("order.order_id: 1-64 letters, digits or '_.:-'")
            if order.store_id and not _ID.match(order.store_id):
                problems.append("order.store_id: 1-64 letters, digits or '_.:-'")
            if order.amount_minor < 0:
                problems.append("order.amount_minor: >= 0")
            if not _CURRENCY.match(order.currency):
                problems.append("order.currency_code: ISO 4217, e.g. CNY")
    if event.type is EventType.ORDER_REFUNDED:
        refund = event.refund
        if refund is None:
            problems.append("refund: required for ORDER_REFUNDED")
        else:
            if not _ID.match(refund.order_id):
                problems.append("refund.order_id: 1-64 letters, digits or '_.:-'")
            if refund.amount_minor <= 0:
                problems.append("refund.amount_minor: > 0")
    if problems:
        return EventOutcome(
            event.event_id, EventResult.REFUSED, "INVALID_EVENT", "; ".join(problems)
        )
    return None


def unknown_member(event: MemberEvent) -> EventOutcome:
    return _refused(
        event, UNKNOWN_MEMBER, f"the audience system does not know member {event.member_id}"
    )


def apply(event: MemberEvent, orders: dict[str, OrderState]) -> EventOutcome:
    """Take a valid event against the orders known so far (changed in place)."""
    taken = EventOutcome(event.event_id, EventResult.ACCEPTED)
    if event.type not in (EventType.ORDER_PAID, EventType.ORDER_REFUNDED):
        return taken  # nothing to check beyond the event itself
    if event.order is not None and event.type is EventType.ORDER_PAID:
        if event.order.order_id in orders:
            return _refused(event, "ORDER_EXISTS", f"order {event.order.order_id} was paid before")
        orders[event.order.order_id] = OrderState(event.member_id, event.order.amount_minor, 0)
        return taken
    refund = event.refund
    assert refund is not None  # refusal() made sure
    order = orders.get(refund.order_id)
    if order is None:
        return _refused(event, "ORDER_NOT_FOUND", f"no paid order {refund.order_id}")
    if order.member_id != event.member_id:
        return _refused(event, "ORDER_NOT_FOUND", f"no paid order {refund.order_id} of this member")
    left = order.amount_minor - order.refunded_minor
    if refund.amount_minor > left:
        return _refused(
            event, "REFUND_EXCEEDS_ORDER", f"{refund.amount_minor} is more than the {left} left"
        )
    order.refunded_minor += refund.amount_minor
    return taken


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} minutes"


def _refused(event: MemberEvent, reason: str, message: str) -> EventOutcome:
    return EventOutcome(event.event_id, EventResult.REFUSED, reason, message)
