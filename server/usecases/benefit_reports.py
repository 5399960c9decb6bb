"""What front offices report about a member's plan benefits: an order used
one, or the order was cancelled or refunded and it is given back (回补).

As every scenario answer, it is about one member of the asking shop: a
benefit that is not this member's in this shop is NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from domain.downstream_ports import BenefitLedger
from domain.errors import DeadlineExceeded, FailedPrecondition, NotFound
from domain.held_benefits import HeldBenefit
from domain.plan import PlanState
from domain.ports import Clock, RequestKey
from domain.records import MemberRecord
from server.persistence.member_benefits import MemberBenefits, replenish_record_id, use_record_id
from server.usecases.once import remembered
from server.usecases.plans import UnitOfWorkFactory

Reported = tuple[HeldBenefit, MemberRecord]


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
        key: RequestKey | None = None,
    ) -> Reported:
        """An order used the benefit: marked at the benefit platform, then
        here with a record and the plan's count. Idempotent by (benefit,
        order): the same report again answers the same and changes nothing."""

        async def report() -> Reported:
            held = await self._held(shop_id, member_id, instance_id)
            record_id = use_record_id(instance_id, order_id)
            done = await self._benefits.record(shop_id, record_id)
            if done is not None:
                return await self._current(held), done
            now = self._clock.now()
            used = held.used(order_id, now)
            await self._ledger.mark_used(
                shop_id, instance_id, order_id, record_id, _within(timeout)
            )
            return await self._benefits.mark_used(held, used, store_id, request_id, now)

        return await self._once(shop_id, key, report)

    async def replenish(
        self,
        shop_id: str,
        member_id: str,
        instance_id: str,
        order_id: str,
        reason: str,
        request_id: str,
        timeout: float | None,
        key: RequestKey | None = None,
    ) -> Reported:
        """The order that used the benefit was cancelled or refunded: give
        the benefit back (回补) through the benefit platform, once.

        The same request (same request id) again answers the same; another
        request for a use already given back is refused. A call cut short
        (deadline, platform down) changed nothing here, and its retry meets
        the platform's idempotency key, so the benefit comes back once."""

        async def report() -> Reported:
            held = await self._held(shop_id, member_id, instance_id)
            record_id = replenish_record_id(instance_id, order_id)
            done = await self._benefits.record(shop_id, record_id)
            if done is not None:
                _same_request(done, request_id)
                return await self._current(held), done
            now = self._clock.now()
            back = held.given_back(order_id, now)
            await self._check_plan_allows(held)
            await self._ledger.replenish(
                shop_id, instance_id, order_id, record_id, reason, _within(timeout)
            )
            current, done = await self._benefits.mark_replenished(
                held, back, reason, request_id, now
            )
            # Racing calls all reach here; the one whose record stands gave it
            # back, and the others are answered as if they had come second.
            _same_request(done, request_id)
            return current, done

        return await self._once(shop_id, key, report)

    async def _once(
        self, shop_id: str, key: RequestKey | None, report: Callable[[], Awaitable[Reported]]
    ) -> Reported:
        """The request log every side-effecting call shares: a request id
        used before for another request is REQUEST_ID_REUSED; a replay is
        answered from the first call's record and the benefit as it is now."""
        if key is None:
            return await report()
        made: list[Reported] = []

        async def work() -> dict[str, Any]:
            made.append(await report())
            held, record = made[0]
            return {"member_id": held.member_id, "record_id": record.record_id}

        answer = await remembered(self._uow, shop_id, key, work)
        if made and made[0][1].record_id == answer["record_id"]:
            return made[0]
        record = await self._benefits.record(shop_id, answer["record_id"])
        if record is None:  # erased since (EraseMember)
            raise NotFound(f"record {answer['record_id']!r} is gone", reason="RECORD_NOT_FOUND")
        held = await self._held(shop_id, answer["member_id"], record.instance_id)
        return await self._current(held), record

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


def _same_request(done: MemberRecord, request_id: str) -> None:
    """The give-back on record is this request's (a retry), or it is refused."""
    if done.detail.get("request_id", "") != request_id:
        raise FailedPrecondition(
            f"the use of benefit {done.instance_id!r} by order "
            f"{done.detail.get('order_id', '')!r} was given back already",
            reason="BENEFIT_ALREADY_REPLENISHED",
        )


def _within(timeout: float | None) -> float | None:
    """The time left for a downstream call, or DEADLINE_EXCEEDED when none is."""
    if timeout is not None and timeout <= 0:
        raise DeadlineExceeded(
            "the call's deadline left no time to ask the benefit platform; retry with "
            "the same request id and a longer deadline",
            retry_after=0.0,
        )
    return timeout
