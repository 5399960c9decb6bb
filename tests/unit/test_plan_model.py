"""The plan model without I/O: validation, masks, etags, storage codec."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import audience as a
from domain import drafts
from domain import plan as d
from domain.errors import Aborted, FailedPrecondition, InvalidArgument
from domain.plan_codec import plan_from_dict, plan_to_dict

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=200)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NOW_EXPR = "* * * * * * * 1"
DAILY_9 = "0 0 9 * * * * 31"
TERM_2026 = "0-0 0-0 0-0 1-31 1-12 * 2026-2026 2"
TERM_2027 = "0-0 0-0 0-0 1-31 1-12 * 2027-2027 2"


def test_every_violation_is_reported_at_once() -> None:
    spec = d.PlanSpec(
        display_name=" ",
        time_zone="UTC+8",
        audience=a.AnyOf((a.Levels(()), a.Birthday(a.BirthdayScope.DAY, days_ahead=90))),
        actions=(
            d.SendMessage(d.MessageChannel.UNSPECIFIED, ""),
            d.GrantBenefits((d.BenefitGrant("coupon", d.BenefitKind.COUPON, 0),)),
        ),
        limits=d.PlanLimits(frequency=d.FrequencyLimit(max_times=2), rate_override=-1),
    )
    fields = {v.field for v in drafts.validate_spec(spec)}
    assert fields == {
        "plan.display_name",
        "plan.time_zone",
        "plan.audience.any_of.rules[0].levels.levels",
        "plan.audience.any_of.rules[1].birthday.days_ahead",
        "plan.actions[0].send_message.channel",
        "plan.actions[0].send_message.template_id",
        "plan.actions[1].grant_benefit.benefits[0].quantity",
        "plan.limits.frequency.window",
        "plan.limits.rate_override",
    }


def test_rules_deeper_than_the_limit_are_refused() -> None:
    rule: a.Rule = a.Follower()
    for _ in range(a.MAX_RULE_DEPTH):
        rule = a.Not(rule)
    violations = a.validate_rule(rule, "r")
    assert len(violations) == 1 and "nest at most" in violations[0].description


def test_update_applies_only_masked_fields_and_moves_the_etag() -> None:
    plan = drafts.new_plan("s", "p", d.PlanSpec(display_name="one", description="keep"), "u", NOW)
    changed = drafts.apply_mask(
        plan.spec, d.PlanSpec(display_name="two", description="drop"), ["display_name"]
    )
    updated = plan.updated(changed, "v", NOW)
    assert (updated.spec.display_name, updated.spec.description) == ("two", "keep")
    assert updated.etag != plan.etag and updated.update_by == "v"
    plan.check_etag("")  # no etag: no check
    plan.check_etag(plan.etag)
    with pytest.raises(Aborted):
        plan.check_etag(updated.etag)


def test_unknown_mask_paths_are_refused() -> None:
    spec = d.PlanSpec(display_name="x")
    with pytest.raises(InvalidArgument) as err:
        drafts.apply_mask(spec, spec, ["display_name", "state", "etag"])
    assert [v.field for v in err.value.violations] == [
        "update_mask.paths[1]",
        "update_mask.paths[2]",
    ]


def test_published_plans_change_only_safely_and_are_never_deleted() -> None:
    from domain.lifecycle import check_safe_change

    plan = drafts.new_plan("s", "p", d.PlanSpec(display_name="x"), "u", NOW)
    published = d.Plan(**{**plan.__dict__, "state": d.PlanState.ACTIVE})
    check_safe_change(published, plan.spec, ["display_name", "limits.rate_override"])
    with pytest.raises(FailedPrecondition) as err:
        check_safe_change(published, plan.spec, ["audience", "actions"])
    assert [v.field for v in err.value.violations] == [
        "update_mask.paths[0]",
        "update_mask.paths[1]",
    ]
    with pytest.raises(FailedPrecondition):
        published.check_deletable()
    ended = d.Plan(**{**plan.__dict__, "state": d.PlanState.ENDED})
    with pytest.raises(FailedPrecondition):
        ended.updated(plan.spec, "u", NOW)


codes = st.text(alphabet="ABCXYZ0123", min_size=1, max_size=6)
leaf_rules = st.one_of(
    st.builds(a.Levels, st.tuples(codes, codes)),
    st.builds(a.Birthday, st.sampled_from(a.BirthdayScope), st.integers(0, 31)),
    st.just(a.Follower()),
    st.builds(a.BrowsedNotBought, st.integers(1, 365)),
    st.builds(a.CartedNotPaid, st.integers(1, 365)),
    st.builds(a.Tags, st.tuples(codes), st.booleans()),
    st.builds(a.Members, st.tuples(codes, codes, codes)),
)
rules = st.recursive(
    leaf_rules,
    lambda inner: st.one_of(
        st.builds(a.AllOf, st.tuples(inner, inner)),
        st.builds(a.AnyOf, st.tuples(inner)),
        st.builds(a.Not, inner),
    ),
    max_leaves=8,
)
actions = st.one_of(
    st.builds(
        d.GrantBenefits,
        st.tuples(
            st.builds(d.BenefitGrant, codes, st.sampled_from(d.BenefitKind), st.integers(1, 99))
        ),
    ),
    st.builds(
        d.SendMessage,
        st.sampled_from(d.MessageChannel),
        codes,
        st.lists(st.tuples(codes, st.text(max_size=8)), max_size=3).map(tuple),
    ),
)
specs = st.builds(
    d.PlanSpec,
    display_name=st.text(min_size=1, max_size=20),
    description=st.text(max_size=20),
    product_id=st.sampled_from(["", "birthday", "member_day", "payday", "shop_anniversary"]),
    front_office=st.sampled_from(d.FrontOffice),
    time_zone=st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York"]),
    audience=st.none() | rules,
    time=st.builds(
        d.PlanTime,
        st.sampled_from(["", NOW_EXPR]),
        st.sampled_from(["", TERM_2026, TERM_2027]),
        st.sampled_from(["", DAILY_9, "* * * * * 1,3 * 32"]),
        st.sampled_from(d.MissedFirePolicy),
    ),
    actions=st.lists(actions, max_size=3).map(tuple),
    limits=st.builds(
        d.PlanLimits,
        st.builds(d.FrequencyLimit, st.integers(0, 5), st.sampled_from(d.FrequencyWindow)),
        st.integers(0, 10**9),
        st.none()
        | st.builds(
            d.QuietHours, st.just("22:00"), st.just("08:00"), st.sampled_from(d.QuietHoursPolicy)
        ),
        st.floats(0, 1000),
    ),
)


@given(specs)
def test_stored_plans_read_back_equal(spec: d.PlanSpec) -> None:
    plan = d.Plan("s", "p", spec, d.PlanState.DRAFT, 3, "u", NOW, "v", NOW, "t")
    assert plan_from_dict(plan_to_dict(plan)) == plan


def test_nested_mask_paths_change_one_part() -> None:
    spec = d.PlanSpec(
        display_name="x",
        time=d.PlanTime(effective=NOW_EXPR, term=TERM_2026, execution=DAILY_9),
        limits=d.PlanLimits(total_budget=5, rate_override=2.0),
    )
    changes = d.PlanSpec(
        display_name="", time=d.PlanTime(term=TERM_2027), limits=d.PlanLimits(total_budget=7)
    )
    updated = drafts.apply_mask(spec, changes, ["time.term", "limits.total_budget"])
    assert updated.time == d.PlanTime(effective=NOW_EXPR, term=TERM_2027, execution=DAILY_9)
    assert updated.limits == d.PlanLimits(total_budget=7, rate_override=2.0)
    assert updated.display_name == "x"


def test_non_finite_rates_and_unknown_zones_are_refused() -> None:
    spec = d.PlanSpec(
        display_name="x", time_zone="America", limits=d.PlanLimits(rate_override=float("nan"))
    )
    assert {v.field for v in drafts.validate_spec(spec)} == {
        "plan.time_zone",
        "plan.limits.rate_override",
    }
