"""A shop's policies over all of its plans.

Contact limits: how many messages one member may get per channel and window
from all of the shop's plans together (a global frequency cap, as Braze's),
beside each member's own consent per channel.

A member opted out of a channel gets no message on it (Skip.OPTED_OUT); a
member at a channel's limit gets no more there in that window
(Skip.CONTACT_CAP), and, when the limit says so, none of the plan's grants
either. Both are skip reasons per member in the run that meets them.

The approval threshold: a plan whose next run would reach more members
than this is published only once another caller, an approver, approves it
(domain.lifecycle).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from domain.errors import Aborted, FieldViolation
from domain.plan import MessageChannel, Plan, SendMessage
from domain.zones import zone as zone_of

MAX_MESSAGES = 1000


class ContactWindow(enum.Enum):
    DAY = "day"
    WEEK = "week"  # Monday to Sunday
    MONTH = "month"


@dataclass(frozen=True)
class ContactLimit:
    channel: MessageChannel
    max_messages: int
    window: ContactWindow
    caps_grants: bool = False


@dataclass(frozen=True)
class ShopPolicy:
    shop_id: str
    contact_limits: tuple[ContactLimit, ...] = ()
    approval_threshold: int = 0  # 0: no plan needs an approval
    revision: int = 0
    update_by: str = ""
    update_time: datetime | None = None

    @property
    def etag(self) -> str:
        return f"r{self.revision}"

    def limit(self, channel: MessageChannel) -> ContactLimit | None:
        return next((lim for lim in self.contact_limits if lim.channel is channel), None)

    def needs_approval(self, audience: int) -> bool:
        return 0 < self.approval_threshold < audience

    def replaced(
        self,
        limits: tuple[ContactLimit, ...],
        threshold: int,
        etag: str,
        by: str,
        at: datetime,
    ) -> ShopPolicy:
        if etag and etag != self.etag:
            raise Aborted(
                f"the policy of shop {self.shop_id} was changed concurrently (etag "
                f"{etag} is not the current {self.etag}); get it again and retry",
                reason="ETAG_MISMATCH",
            )
        return replace(
            self,
            contact_limits=limits,
            approval_threshold=threshold,
            revision=self.revision + 1,
            update_by=by,
            update_time=at,
        )


def violations(
    limits: tuple[ContactLimit, ...], threshold: int, path: str = "policy"
) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if threshold < 0:
        out.append(FieldViolation(f"{path}.approval_threshold", "must be >= 0 (0: never)"))
    path = f"{path}.contact_limits"
    seen: set[MessageChannel] = set()
    for i, limit in enumerate(limits):
        where = f"{path}[{i}]"
        if limit.channel is MessageChannel.UNSPECIFIED:
            out.append(FieldViolation(f"{where}.channel", "required"))
        elif limit.channel in seen:
            out.append(FieldViolation(f"{where}.channel", "one limit per channel"))
        seen.add(limit.channel)
        if not 1 <= limit.max_messages <= MAX_MESSAGES:
            out.append(FieldViolation(f"{where}.max_messages", f"must be 1-{MAX_MESSAGES}"))
    return out


def channels(plan: Plan) -> tuple[MessageChannel, ...]:
    """The channels a plan's messages go out on, once each."""
    found = (a.channel for a in plan.spec.actions if isinstance(a, SendMessage))
    return tuple(dict.fromkeys(found))


def window_key(window: ContactWindow, at: datetime, zone: str) -> str:
    """Which window an instant counts in, as a key: the local date, the
    week's Monday, or the month, in the zone of the plan that sends."""
    day: date = at.astimezone(zone_of(zone)).date()
    if window is ContactWindow.DAY:
        return f"d{day.isoformat()}"
    if window is ContactWindow.WEEK:
        return f"w{(day - timedelta(days=day.weekday())).isoformat()}"
    return f"m{day:%Y-%m}"
