"""A held benefit's rules, as the front offices meet them through
ReportBenefitUse and ReplenishBenefit (tests/integration/test_scenario.py
runs them end to end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import FailedPrecondition
from domain.held_benefits import BenefitState, HeldBenefit

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def held(
    state: BenefitState = BenefitState.UNUSED,
    valid_from: datetime | None = NOW - timedelta(days=1),
    valid_until: datetime | None = NOW + timedelta(days=1),
    order_id: str = "",
) -> HeldBenefit:
    return HeldBenefit(
        "s1", "i1", "m1", "p1", "r1", "coupon-10", 1, "COUPON", "10 off", 1,
        state, valid_from, valid_until, NOW - timedelta(days=2), order_id=order_id,
    )  # fmt: skip


def test_an_unused_benefit_is_used_by_one_order_and_given_back_for_that_order() -> None:
    used = held().used("o1", NOW)
    assert (used.state, used.order_id, used.use_time) == (BenefitState.USED, "o1", NOW)
    back = used.given_back("o1", NOW)
    assert (back.state, back.order_id, back.use_time) == (BenefitState.UNUSED, "", None)


@pytest.mark.parametrize(
    ("benefit", "reason"),
    [
        (held(BenefitState.USED, order_id="o0"), "BENEFIT_USED"),
        (held(BenefitState.RECOVERED), "BENEFIT_RECOVERED"),
        (held(valid_until=NOW), "BENEFIT_EXPIRED"),  # the end is outside
        (held(valid_from=NOW + timedelta(seconds=1)), "BENEFIT_NOT_YET_VALID"),
    ],
)
def test_only_an_unused_benefit_within_its_validity_is_used(
    benefit: HeldBenefit, reason: str
) -> None:
    with pytest.raises(FailedPrecondition) as err:
        benefit.used("o1", NOW)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("benefit", "reason"),
    [
        (held(), "BENEFIT_NOT_USED"),
        (held(BenefitState.RECOVERED), "BENEFIT_RECOVERED"),
        (held(BenefitState.USED, order_id="o2"), "BENEFIT_USED_BY_ANOTHER_ORDER"),
        (held(BenefitState.USED, order_id="o1", valid_until=NOW), "BENEFIT_EXPIRED"),
    ],
)
def test_only_the_using_orders_use_of_a_valid_benefit_is_given_back(
    benefit: HeldBenefit, reason: str
) -> None:
    with pytest.raises(FailedPrecondition) as err:
        benefit.given_back("o1", NOW)
    assert err.value.reason == reason


def test_an_unused_benefit_past_its_end_reads_expired_and_stays_unused_in_store() -> None:
    late = held(valid_until=NOW - timedelta(seconds=1))
    assert late.status(NOW) is BenefitState.EXPIRED and late.state is BenefitState.UNUSED
    assert held(valid_until=None).status(NOW + timedelta(days=3650)) is BenefitState.UNUSED
