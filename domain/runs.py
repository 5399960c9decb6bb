"""Running a plan: what a run is, and the rules it applies to each member —
deterministic keys, frequency windows, the budget, quiet hours.

A run is one execution of a plan for one fire time; one run exists per
(plan, fire time), so the fire time is also the run's period.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from domain import birthday, calculators
from domain.audience import AllOf, Birthday, BirthdayScope, Rule
from domain.plan import (
    FrequencyWindow,
    GrantBenefits,
    Plan,
    PlanSpec,
    QuietHours,
    QuietHoursPolicy,
    SendMessage,
)
from domain.zones import zone as zone_of


class RunKind(enum.Enum):
    DELIVERY = "delivery"
    RECOVERY = "recovery"
    TEST = "test"  # the plan's actions for named test members, counted apart


class RunTrigger(enum.Enum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    CATCH_UP = "catch_up"
    EVENT = "event"  # members' events of an event-triggered plan came due


@dataclass(frozen=True)
class Run:
    """A run of a plan: made once per fire (its id says which), by the
    scheduler, by hand, to take a run's grants back, or for test members."""

    run_id: str
    shop_id: str
    plan_id: str
    kind: RunKind
    trigger: RunTrigger
    fire_time: datetime
    create_time: datetime
    job_id: str = ""  # the task carrying it out; "" for a skipped fire
    target_run_id: str = ""  # a recovery run: the run it takes back
    # A skipped fire (it has no job): why, and the next fire that counts.
    skip_reason: str = ""
    resume_time: datetime | None = None
    # The plan granted when the run was made (an acted-on member's outcome
    # reads GRANTED, else SENT).
    grants: bool = True


class Skip(enum.Enum):
    """Why a member of the audience was not acted on."""

    FREQUENCY_LIMIT = "FREQUENCY_LIMIT"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    QUIET_HOURS = "QUIET_HOURS"
    OPTED_OUT = "OPTED_OUT"  # opted out of the channel the plan messages on
    CONTACT_CAP = "CONTACT_CAP"  # at the shop's contact limit on that channel
    UNKNOWN_MEMBER = "UNKNOWN_MEMBER"  # listed, but the audience system does not know it
    # Event-triggered: outside the plan's audience when the wait was over.
    NOT_IN_AUDIENCE = "NOT_IN_AUDIENCE"


def run_id(shop_id: str, plan_id: str, kind: RunKind, fire_time: datetime) -> str:
    """The same (plan, kind, fire time) always names the same run, so replicas
    racing to start it, or a scheduler retrying after a crash, meet one run."""
    seed = f"{shop_id}/{plan_id}/{kind.value}/{fire_time.isoformat()}"
    return "r" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def skip_id(shop_id: str, plan_id: str, fire_time: datetime) -> str:
    """A skipped fire's record among the runs: named by the fire, apart from
    the run a catch-up names after the same fire."""
    seed = f"{shop_id}/{plan_id}/skip/{fire_time.isoformat()}"
    return "s" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def test_run_id(shop_id: str, plan_id: str, request_id: str) -> str:
    """A test run is named by its request id: a retried request meets it."""
    seed = f"{shop_id}/{plan_id}/test/{request_id}"
    return "t" + hashlib.sha256(seed.encode()).hexdigest()[:20]


MAX_TEST_MEMBERS = 20


def event_run_id(shop_id: str, plan_id: str, member_id: str, event_id: str) -> str:
    """An event run is named by the first wait it carries: each wait goes
    into one run, once, so no two runs share a name."""
    seed = f"{shop_id}/{plan_id}/event/{member_id}/{event_id}"
    return "e" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def manual_run_id(shop_id: str, plan_id: str, request_id: str) -> str:
    """A run started by hand is named by its request id: a retried trigger
    finds the run the first attempt started."""
    seed = f"{shop_id}/{plan_id}/manual/{request_id}"
    return "m" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def grant_key(plan_id: str, run: str, member_id: str, action: int, benefit: int) -> str:
    """The idempotency key of one grant: a resumed or retried batch sends the
    same key, and the benefit platform grants it once."""
    return f"plans/{plan_id}/runs/{run}/members/{member_id}/actions/{action}/benefits/{benefit}"


def member_of_grant_key(key: str) -> str:
    """The member a grant key names, also from a record id that starts with
    one (`{key}#{instance}`), whatever characters the member id holds."""
    return key.split("/members/", 1)[-1].rsplit("/actions/", 1)[0]


def message_key(plan_id: str, run: str, member_id: str, action: int) -> str:
    return f"plans/{plan_id}/runs/{run}/members/{member_id}/actions/{action}"


def grant_source(plan_id: str) -> str:
    """The `source` every grant and message of a plan carries downstream; the
    benefit platform finds a plan's instances by it (EndPlan's recovery)."""
    return f"plans/{plan_id}"


def frequency_window(plan: Plan, fire_time: datetime) -> str:
    """The window a frequency limit counts in, for a run at `fire_time`: the
    run itself (PERIOD), the birthday the run acts for (BIRTHDAY_YEAR), or
    the plan. At most 32 characters, the width of the claims' column."""
    window = plan.spec.limits.frequency.window
    if window is FrequencyWindow.PLAN:
        return "plan"
    if window is FrequencyWindow.BIRTHDAY_YEAR:
        born = birthday_condition(plan) or Birthday(BirthdayScope.DAY)
        local = fire_time.astimezone(zone_of(plan.spec.time_zone)).date()
        return f"birthday-year/{birthday.occasion(born.scope, local, born.days_ahead)}"
    # A run by hand fires at "now", to the microsecond: in UTC, compactly.
    return f"period/{fire_time.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


def units_per_member(plan: Plan) -> int:
    """Benefit units one member costs the plan's budget."""
    return sum(
        b.quantity
        for action in plan.spec.actions
        if isinstance(action, GrantBenefits)
        for b in action.benefits
    )


def grants(plan: Plan) -> bool:
    return any(isinstance(a, GrantBenefits) for a in plan.spec.actions)


def sends_messages(plan: Plan) -> bool:
    return any(isinstance(a, SendMessage) for a in plan.spec.actions)


def in_quiet_hours(quiet: QuietHours | None, zone: str, at: datetime) -> datetime | None:
    """When `at` falls in the plan's quiet hours, the instant they end;
    otherwise None. Windows may run overnight (start after end)."""
    if quiet is None:
        return None
    local = at.astimezone(zone_of(zone))
    start, end = _hh_mm(quiet.start), _hh_mm(quiet.end)
    now = local.time()
    if start == end:
        return None
    overnight = start > end
    inside = (start <= now or now < end) if overnight else (start <= now < end)
    if not inside:
        return None
    day = local.date()
    if overnight and now >= start:
        day += timedelta(days=1)
    naive = datetime.combine(day, end)
    return naive.replace(tzinfo=local.tzinfo).astimezone(at.tzinfo)


def drops_in_quiet_hours(quiet: QuietHours | None) -> bool:
    return quiet is not None and quiet.policy is QuietHoursPolicy.DROP


def run_audience(plan: Plan) -> Rule | None:
    return run_rule(plan.spec)


def run_rule(spec: PlanSpec) -> Rule | None:
    """The rule a run selects members by: a birthday plan adds the birthday
    its execution type asks for (day, week, month; N days ahead), evaluated
    at the run's fire time in the plan's zone by the audience system."""
    rule = spec.audience
    born = _execution_birthday(spec)
    if born is None:
        return rule
    return born if rule is None else AllOf((rule, born))


def birthday_condition(plan: Plan) -> Birthday | None:
    """The birthday a plan's runs select members by: its execution type's,
    else one its audience requires (alone, or as part of an all-of)."""
    return _execution_birthday(plan.spec) or _required_birthday(plan.spec.audience)


def _execution_birthday(spec: PlanSpec) -> Birthday | None:
    if not spec.time.execution:
        return None
    return calculators.parse(spec.time.execution).birthday


def _required_birthday(rule: Rule | None) -> Birthday | None:
    if isinstance(rule, Birthday):
        return rule
    if isinstance(rule, AllOf):
        for part in rule.rules:
            found = _required_birthday(part)
            if found is not None:
                return found
    return None


def _hh_mm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def recovery_run_id(shop_id: str, plan_id: str, target_run_id: str, request_id: str) -> str:
    """A recovery is named by the run it takes back and its request id: a
    retried request meets the recovery the first attempt started."""
    seed = f"{shop_id}/{plan_id}/recovery/{target_run_id}/{request_id}"
    return "v" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def recover_key(source: str, instance_id: str) -> str:
    """One key per instance of a grant source (`grant_source`), whichever
    path takes it back (a recovery run, or ending the plan with recovery):
    nothing is taken back twice."""
    return f"recover/{source}/{instance_id}"
