"""Using a held benefit and giving it back, over fakes of the benefit
store and the benefit platform: a report is carried out once whatever
the retries, the platform is asked only when the rules allow the change,
and an ended plan gives nothing back unless its limits say so
(tests/integration/test_scenario.py runs the same over gRPC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from domain import plan as d
from domain.errors import FailedPrecondition
from domain.held_benefits import BenefitState, HeldBenefit
from domain.records import MemberRecord, RecordKind
from server.persistence.active_plans import ActivePlans
from server.persistence.member_benefits import MemberBenefits
from server.persistence.member_records import RecordReader
from server.usecases.plans import UnitOfWorkFactory
from server.usecases.scenario import ScenarioUseCases
from tests.unit.fakes import Clock, FakeAudience, FakeUnitOfWork, Store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class FakeHeld:
    """The member benefits store: one benefit, its records, changed once per record id."""

    def __init__(self, held: HeldBenefit) -> None:
        self.held = held
        self.records: dict[str, MemberRecord] = {}

    async def get(self, shop_id: str, member_id: str, instance_id: str) -> HeldBenefit | None:
        return self.held if self.held.instance_id == instance_id else None

    async def record(self, shop_id: str, record_id: str) -> MemberRecord | None:
        return self.records.get(record_id)

    async def mark_used(
        self, held: HeldBenefit, used: HeldBenefit, store_id: str, request_id: str, at: datetime
    ) -> tuple[HeldBenefit, MemberRecord]:
        detail = {"order_id": used.order_id, "request_id": request_id}
        return self._change(used, f"benefit_used#{held.instance_id}#{used.order_id}", detail)

    async def mark_replenished(
        self, held: HeldBenefit, back: HeldBenefit, reason: str, request_id: str, at: datetime
    ) -> tuple[HeldBenefit, MemberRecord]:
        detail = {"order_id": held.order_id, "request_id": request_id}
        record_id = f"benefit_replenished#{held.instance_id}#{held.order_id}"
        return self._change(back, record_id, detail)

    def _change(
        self, new: HeldBenefit, record_id: str, detail: dict[str, Any]
    ) -> tuple[HeldBenefit, MemberRecord]:
        self.held = new
        kind = RecordKind(record_id.split("#")[0])
        record = MemberRecord(record_id, new.member_id, kind, "p1", "r1", "i1", "t", NOW, detail)
        self.records[record_id] = record
        return new, record


class FakeLedger:
    """The benefit platform: what it was asked to change, by idempotency key."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def mark_used(
        self, shop_id: str, instance_id: str, order_id: str, key: str, timeout: float | None
    ) -> None:
        self.calls.append(("used", key))

    async def replenish(
        self,
        shop_id: str,
        instance_id: str,
        order_id: str,
        key: str,
        reason: str,
        timeout: float | None,
    ) -> None:
        self.calls.append(("replenished", key))

    async def template(self, shop_id: str, template_id: str, version: int) -> Any:
        raise AssertionError("not asked by these tests")


def coupon(valid_until: datetime | None = NOW + timedelta(days=1)) -> HeldBenefit:
    return HeldBenefit(
        "s1", "i1", "m1", "p1", "r1", "coupon-10", 1, "COUPON", "10 off", 1,
        BenefitState.UNUSED, NOW - timedelta(days=1), valid_until, NOW - timedelta(days=1),
    )  # fmt: skip


def the_plan(state: d.PlanState, replenish_after_end: bool = False) -> d.Plan:
    spec = d.PlanSpec(
        display_name="p", limits=d.PlanLimits(replenish_after_end=replenish_after_end)
    )
    return d.Plan("s1", "p1", spec, state, 3, "a", NOW, "a", NOW)


def scenario(
    held: FakeHeld, ledger: FakeLedger, plan_state: d.PlanState = d.PlanState.ACTIVE, **limits: bool
) -> ScenarioUseCases:
    store = Store(plans={("s1", "p1"): the_plan(plan_state, **limits)})
    return ScenarioUseCases(
        cast(RecordReader, None),
        cast(MemberBenefits, held),
        cast(ActivePlans, None),
        FakeAudience(),
        ledger,
        cast(UnitOfWorkFactory, lambda: FakeUnitOfWork(store)),
        Clock(NOW),
    )


async def test_a_use_reported_twice_is_carried_out_once() -> None:
    held, ledger = FakeHeld(coupon()), FakeLedger()
    shopper = scenario(held, ledger)
    first = await shopper.use("s1", "m1", "i1", "o1", "store-9", "req-1", None)
    again = await shopper.use("s1", "m1", "i1", "o1", "store-9", "req-2", None)
    assert first == again and first[0].state is BenefitState.USED
    assert ledger.calls == [("used", "benefit_used#i1#o1")]


async def test_an_expired_benefit_is_refused_before_the_platform_is_asked() -> None:
    held, ledger = FakeHeld(coupon(valid_until=NOW)), FakeLedger()
    with pytest.raises(FailedPrecondition) as err:
        await scenario(held, ledger).use("s1", "m1", "i1", "o1", "store-9", "req-1", None)
    assert err.value.reason == "BENEFIT_EXPIRED" and not ledger.calls


async def test_a_use_given_back_once_refuses_another_request_for_it() -> None:
    held, ledger = FakeHeld(coupon()), FakeLedger()
    shopper = scenario(held, ledger)
    await shopper.use("s1", "m1", "i1", "o1", "store-9", "use", None)
    back, _ = await shopper.replenish("s1", "m1", "i1", "o1", "refund", "back", None)
    assert back.state is BenefitState.UNUSED
    again, _ = await shopper.replenish("s1", "m1", "i1", "o1", "refund", "back", None)
    assert again == back  # the same request: the same answer
    with pytest.raises(FailedPrecondition) as err:  # another request for the same use
        await shopper.replenish("s1", "m1", "i1", "o1", "refund", "other", None)
    assert err.value.reason == "BENEFIT_ALREADY_REPLENISHED"
    assert [c[0] for c in ledger.calls] == ["used", "replenished"]


@pytest.mark.parametrize(("allowed", "given_back"), [(False, False), (True, True)])
async def test_an_ended_plan_gives_back_only_when_its_limits_say_so(
    allowed: bool, given_back: bool
) -> None:
    held = FakeHeld(coupon()._replace(state=BenefitState.USED, order_id="o1", use_time=NOW))
    ledger = FakeLedger()
    shopper = scenario(held, ledger, d.PlanState.ENDED, replenish_after_end=allowed)
    if given_back:
        await shopper.replenish("s1", "m1", "i1", "o1", "refund", "back", None)
    else:
        with pytest.raises(FailedPrecondition) as err:
            await shopper.replenish("s1", "m1", "i1", "o1", "refund", "back", None)
        assert err.value.reason == "PLAN_ENDED"
    assert bool(ledger.calls) is given_back
