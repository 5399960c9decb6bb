"""What front offices report about a member's plan benefits: an order used
one, or the order was cancelled or refunded and it is given back (回补).

As every scenario answer, it is about one member of the asking shop: a
benefit that is not this member's in this shop is NOT_FOUND.
"""

from __future__ import annotations

from domain.downstream_ports import BenefitLedger
from domain.errors import DeadlineExceeded, FailedPrecondition, NotFound
from domain.plan import PlanState
from domain.ports import Clock
from server.scenario.benefits import (
    RECOVERED,
    UNUSED,
    USED,
    HeldBenefit,
    MemberBenefits,
    replenish_record_id,
    use_record_id,
)
from server.scenario.records import MemberRecord
from server.usecases.plans import UnitOfWorkFactory


class BenefitReports:
    """The base of ScenarioUseCases: using and giving back benefits."""

    _benefits: MemberBenefits
    _ledger: BenefitLedger
    _uow: UnitOfWorkFactory
    _clock: Clock

    async def use(
        self,
        shop_id: str,
        member_id: str,
        instance_id: str,
        order_id: str,
        store_id: str,
        request_id: str,
        timeout: float | None,
    ) -> tuple[HeldBenefit, MemberRecord]:
        """An order used the benefit: marked at the benefit platform, then
        here with a record and the plan's count. Idempotent by (benefit,
        order): the same report again answers the same and changes nothing."""
        held = await self._held(shop_id, member_id, instance_id)
        key = use_record_id(instance_id, order_id)
        done = await self._benefits.record(shop_id, key)
        if done is not None:
            return await self._current(held), done
        now = self._clock.now()
        status = held.status(now)
        if status != UNUSED:
            raise FailedPrecondition(
                f"benefit {instance_id!r} is {status}"
                + (f" (by order {held.order_id!r})" if status == USED else "")
                + "; only an unused benefit can be used",
                reason=f"BENEFIT_{status.upper()}",
            )
        if held.valid_from is not None and held.valid_from > now:
            raise FailedPrecondition(
                f"benefit {instance_id!r} is valid from {held.valid_from.isoformat()}",
                reason="BENEFIT_NOT_YET_VALID",
            )
        await self._ledger.mark_used(shop_id, instance_id, order_id, key, _within(timeout))
        return await self._benefits.mark_used(held, order_id, store_id, request_id, now)

    async def replenish(
        self,
        shop_id: str,
        member_id: str,
        instance_id: str,
        order_id: str,
        reason: str,
        request_id: str,
        timeout: float | None,
    ) -> tuple[HeldBenefit, MemberRecord]:
        """The order that used the benefit was cancelled or refunded: give
        the benefit back (回补) through the benefit platform, once.

        The same request (same request id) again answers the same; another
        request for a use already given back is refused. A call cut short
        (deadline, platform down) changed nothing here, and its retry meets
        the platform's idempotency key, so the benefit comes back once."""
        held = await self._held(shop_id, member_id, instance_id)
        key = replenish_record_id(instance_id, order_id)
        done = await self._benefits.record(shop_id, key)
        if done is not None:
            if done.detail.get("request_id", "") != request_id:
                raise FailedPrecondition(
                    f"the use of benefit {instance_id!r} by order {order_id!r} "
                    "was given back already",
                    reason="BENEFIT_ALREADY_REPLENISHED",
                )
            return await self._current(held), done
        now = self._clock.now()
        if held.state == RECOVERED:
            raise FailedPrecondition(
                f"benefit {instance_id!r} was taken back", reason="BENEFIT_RECOVERED"
            )
        if held.state != USED:
            raise FailedPrecondition(
                f"benefit {instance_id!r} is not used; nothing to give back",
                reason="BENEFIT_NOT_USED",
            )
        if held.order_id != order_id:
            raise FailedPrecondition(
                f"benefit {instance_id!r} was used by another order, not {order_id!r}",
                reason="BENEFIT_USED_BY_ANOTHER_ORDER",
            )
        if held.valid_until is not None and held.valid_until <= now:
            raise FailedPrecondition(
                f"benefit {instance_id!r} expired at {held.valid_until.isoformat()}; "
                "it cannot be given back",
                reason="BENEFIT_EXPIRED",
            )
        await self._check_plan_allows(held)
        await self._ledger.replenish(shop_id, instance_id, order_id, key, reason, _within(timeout))
        return await self._benefits.mark_replenished(held, order_id, reason, request_id, now)

    async def _check_plan_allows(self, held: HeldBenefit) -> None:
        async with self._uow() as uow:
            plan = await uow.plans.get(held.shop_id, held.plan_id)
        ended = plan is None or plan.state is PlanState.ENDED
        if ended and not (plan is not None and plan.spec.limits.replenish_after_end):
            raise FailedPrecondition(
                f"plan {held.plan_id!r} has ended and its limits.replenish_after_end is off",
                reason="PLAN_ENDED",
            )

    async def _held(self, shop_id: str, member_id: str, instance_id: str) -> HeldBenefit:
        held = await self._benefits.get(shop_id, member_id, instance_id)
        if held is None:
            raise NotFound(
                f"member {member_id!r} of shop {shop_id!r} holds no plan benefit {instance_id!r}",
                reason="BENEFIT_NOT_FOUND",
            )
        return held

    async def _current(self, held: HeldBenefit) -> HeldBenefit:
        return await self._benefits.get(held.shop_id, held.member_id, held.instance_id) or held


def _within(timeout: float | None) -> float | None:
    """The time left for a downstream call, or DEADLINE_EXCEEDED when none is."""
    if timeout is not None and timeout <= 0:
        raise DeadlineExceeded(
            "the call's deadline left no time to ask the benefit platform; retry with "
            "the same request id and a longer deadline",
            retry_after=0.0,
        )
    return timeout
