"""The benefits members hold from plans' grants, and the rules of their
life: used by an order, given back (回补) when that order is cancelled or
refunded, taken back by a recovery, expired at the end of their validity.

The rules answer FAILED_PRECONDITION with a reason a front office can act
on; where the state lives and how a change is made once is the store's
business (server/persistence/member_benefits.py)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple

from domain.errors import FailedPrecondition


class BenefitState(enum.StrEnum):
    """As stored; EXPIRED is never stored: an unused benefit past its end reads so."""

    UNUSED = "unused"
    USED = "used"
    RECOVERED = "recovered"
    EXPIRED = "expired"


class HeldBenefit(NamedTuple):
    """A tuple, not a dataclass: pages and runs make one per benefit, and a
    tuple is made several times faster."""

    shop_id: str
    instance_id: str
    member_id: str
    plan_id: str
    run_id: str
    template_id: str
    template_version: int
    kind: str  # domain.plan.BenefitKind name, e.g. "COUPON"
    display_name: str
    quantity: int
    state: BenefitState  # as stored: unused, used or recovered
    valid_from: datetime | None
    valid_until: datetime | None
    grant_time: datetime
    use_time: datetime | None = None
    order_id: str = ""

    def status(self, now: datetime) -> BenefitState:
        """The state as a member sees it: an unused benefit past its end is expired."""
        if (
            self.state is BenefitState.UNUSED
            and self.valid_until is not None
            and self.valid_until <= now
        ):
            return BenefitState.EXPIRED
        return self.state

    def used(self, order_id: str, now: datetime) -> HeldBenefit:
        """Used by the order: only an unused benefit within its validity."""
        status = self.status(now)
        if status is not BenefitState.UNUSED:
            by = f" (by order {self.order_id!r})" if status is BenefitState.USED else ""
            raise FailedPrecondition(
                f"benefit {self.instance_id!r} is {status.value}{by}; "
                "only an unused benefit can be used",
                reason=f"BENEFIT_{status.name}",
            )
        if self.valid_from is not None and self.valid_from > now:
            raise FailedPrecondition(
                f"benefit {self.instance_id!r} is valid from {self.valid_from.isoformat()}",
                reason="BENEFIT_NOT_YET_VALID",
            )
        return self._replace(state=BenefitState.USED, order_id=order_id, use_time=now)

    def given_back(self, order_id: str, now: datetime) -> HeldBenefit:
        """Given back when the order that used it is cancelled or refunded:
        only that order's use, of a benefit not taken back, still valid."""
        if self.state is BenefitState.RECOVERED:
            raise FailedPrecondition(
                f"benefit {self.instance_id!r} was taken back", reason="BENEFIT_RECOVERED"
            )
        if self.state is not BenefitState.USED:
            raise FailedPrecondition(
                f"benefit {self.instance_id!r} is not used; nothing to give back",
                reason="BENEFIT_NOT_USED",
            )
        if self.order_id != order_id:
            raise FailedPrecondition(
                f"benefit {self.instance_id!r} was used by another order, not {order_id!r}",
                reason="BENEFIT_USED_BY_ANOTHER_ORDER",
            )
        if self.valid_until is not None and self.valid_until <= now:
            raise FailedPrecondition(
                f"benefit {self.instance_id!r} expired at {self.valid_until.isoformat()}; "
                "it cannot be given back",
                reason="BENEFIT_EXPIRED",
            )
        return self._replace(state=BenefitState.UNUSED, order_id="", use_time=None)
