"""Members' outcomes as stored and as read, the control group's hash, and
the statistics of a plan's effect — with no server, database or network."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from domain import effect, outcomes
from domain.outcomes import OutcomeKind
from domain.plan import MessageChannel

SMS, PUSH = MessageChannel.SMS, MessageChannel.APP_PUSH


def test_each_stored_form_reads_as_the_outcome_it_records() -> None:
    until = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    no_sms = outcomes.act_except({SMS}, "OPTED_OUT")
    cases = {
        (outcomes.ACT, True): outcomes.Reading(OutcomeKind.GRANTED),
        (outcomes.ACT, False): outcomes.Reading(OutcomeKind.SENT),
        (outcomes.silent("QUIET_HOURS"), True): outcomes.Reading(
            OutcomeKind.GRANTED, "QUIET_HOURS"
        ),
        (no_sms, False): outcomes.Reading(OutcomeKind.SENT, "OPTED_OUT", (SMS,)),
        (outcomes.deferred(until, no_sms), True): outcomes.Reading(
            OutcomeKind.DEFERRED, "QUIET_HOURS", (SMS,), until
        ),
        ("skip:BUDGET_EXHAUSTED", True): outcomes.Reading(OutcomeKind.SKIPPED, "BUDGET_EXHAUSTED"),
        ("fail:OUT_OF_STOCK", True): outcomes.Reading(OutcomeKind.FAILED, "OUT_OF_STOCK"),
        (outcomes.HELD_OUT, True): outcomes.Reading(OutcomeKind.HELD_OUT),
        # Stored before reasons were kept.
        ("act-silent", True): outcomes.Reading(OutcomeKind.GRANTED),
        ("act-no:1,3", True): outcomes.Reading(OutcomeKind.GRANTED, "", (SMS, PUSH)),
    }
    for (stored, grants), reading in cases.items():
        assert outcomes.read(stored, grants) == reading, stored
        assert len(stored) <= 32, stored  # the column's width


def test_what_a_run_does_with_each_stored_form() -> None:
    until = datetime(2026, 11, 25, tzinfo=UTC)
    assert outcomes.acts(outcomes.ACT) and outcomes.acts(outcomes.deferred(until, "act"))
    assert not outcomes.acts(outcomes.HELD_OUT) and not outcomes.acts("skip:QUIET_HOURS")
    assert outcomes.withheld(outcomes.silent("CONTACT_CAP")) is None
    assert outcomes.withheld(outcomes.act_except({PUSH, SMS}, "OPTED_OUT")) == frozenset(
        {SMS, PUSH}
    )
    assert outcomes.withheld(outcomes.deferred(until, "act")) == frozenset()


@pytest.mark.parametrize("percent", [0.0, 5.0, 20.0, 50.0])
def test_the_control_group_is_its_share_and_the_same_every_time(percent: float) -> None:
    members = [f"m{i:08d}" for i in range(100_000)]
    held = {m for m in members if outcomes.held_out("plan-1", m, percent)}
    assert abs(len(held) / len(members) - percent / 100) <= 0.01
    assert held == {m for m in members if outcomes.held_out("plan-1", m, percent)}
    # Another plan holds out other members.
    other = {m for m in members if outcomes.held_out("plan-2", m, percent)}
    assert percent == 0 or other != held


def test_t_quantiles_match_the_tables() -> None:
    # Student's t, 97.5th percentile (any statistics table).
    for df, table in ((3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042), (1000, 1.962)):
        assert math.isclose(effect.t_quantile(df), table, rel_tol=2e-3), df


def test_a_planted_difference_of_rates_is_inside_its_interval() -> None:
    rng = random.Random(7)
    n, held_n = 80_000, 20_000
    converted = sum(rng.random() < 0.12 for _ in range(n))
    held = sum(rng.random() < 0.10 for _ in range(held_n))
    uplift = effect.proportions(converted, n, held, held_n)
    assert uplift is not None
    assert uplift.absolute_low < 0.02 < uplift.absolute_high and uplift.absolute_low > 0
    assert uplift.relative_low < 0.2 < uplift.relative_high
    assert effect.proportions(1, 10, 0, 0) is None


def test_welchs_interval_of_means_from_sums() -> None:
    rng = random.Random(3)
    a = [rng.gauss(110, 30) for _ in range(5_000)]
    b = [rng.gauss(100, 20) for _ in range(2_000)]
    uplift = effect.means(
        effect.Sample(len(a), sum(a), sum(x * x for x in a)),
        effect.Sample(len(b), sum(b), sum(x * x for x in b)),
    )
    assert uplift is not None
    assert uplift.absolute_low < 10 < uplift.absolute_high
    assert uplift.relative_low < 0.1 < uplift.relative_high
    assert effect.means(effect.Sample(1, 5.0, 25.0), effect.Sample(10, 5.0, 5.0)) is None
