"""A plan's lifecycle: draft -> scheduled -> active <-> paused -> ended.

Only the transitions below exist; every one bumps the plan's revision (its
etag). Publishing checks that the draft is complete and that something of
its time lies ahead; the move from scheduled to active at the first fire,
and to ended when nothing of the plan's time lies ahead (`expire`), belong
to the scheduler, which asks the plan's calendar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from domain import term
from domain.downstream_ports import TemplateInfo
from domain.errors import FailedPrecondition, FieldViolation
from domain.mask_paths import JSON_NOTE, json_paths
from domain.plan import Approval, FrontOffice, GrantBenefits, Plan, PlanSpec, PlanState
from domain.plan_calendar import TICK, End, EndReason, PlanCalendar

# state -> the states a merchant's call may move it to
_ALLOWED = {
    ("publish", PlanState.DRAFT),
    ("pause", PlanState.ACTIVE),
    ("resume", PlanState.PAUSED),
    ("end", PlanState.SCHEDULED),
    ("end", PlanState.ACTIVE),
    ("end", PlanState.PAUSED),
}


def _check(plan: Plan, action: str) -> None:
    if (action, plan.state) not in _ALLOWED:
        allowed = sorted(s.value for a, s in _ALLOWED if a == action)
        raise FailedPrecondition(
            f"plan {plan.plan_id} is {plan.state.value}; {action} needs a plan that is "
            f"{' or '.join(allowed)}",
            reason="ILLEGAL_TRANSITION",
        )


def missing_for_publish(spec: PlanSpec, path: str = "plan") -> list[FieldViolation]:
    """What a draft must still get before it can be published."""
    out = []
    if not spec.product_id:
        out.append(FieldViolation(f"{path}.product_id", "required to publish"))
    if spec.front_office is FrontOffice.UNSPECIFIED:
        out.append(FieldViolation(f"{path}.front_office", "required to publish"))
    if spec.audience is None:
        out.append(FieldViolation(f"{path}.audience", "required to publish"))
    if not spec.time.execution:
        out.append(FieldViolation(f"{path}.time.execution", "required to publish"))
    if not spec.actions:
        out.append(FieldViolation(f"{path}.actions", "at least one action to publish"))
    return out


def granted_templates(spec: PlanSpec) -> list[str]:
    """The benefit templates the plan's actions grant, in order, once each."""
    ids = (g.template_id for a in spec.actions if isinstance(a, GrantBenefits) for g in a.benefits)
    return list(dict.fromkeys(ids))


def benefit_violations(
    spec: PlanSpec, known: Mapping[str, TemplateInfo], path: str = "plan"
) -> list[FieldViolation]:
    """Each grant as the benefit platform can give it: its template exists,
    is not retired, and is of the grant's kind — otherwise every member of
    every run would fail."""
    out = []
    for i, action in enumerate(spec.actions):
        if not isinstance(action, GrantBenefits):
            continue
        for j, grant in enumerate(action.benefits):
            where = f"{path}.actions[{i}].grant_benefit.benefits[{j}]"
            info = known.get(grant.template_id)
            if info is None:
                problem = f"the benefit platform has no template {grant.template_id!r}"
                out.append(FieldViolation(f"{where}.template_id", problem))
            elif info.retired:
                problem = f"template {grant.template_id!r} is retired; choose another"
                out.append(FieldViolation(f"{where}.template_id", problem))
            elif info.kind is not grant.kind:
                problem = (
                    f"template {grant.template_id!r} is {info.kind.value}, not {grant.kind.value}"
                )
                out.append(FieldViolation(f"{where}.kind", problem))
    return out


def publish(plan: Plan, by: str, now: datetime) -> Plan:
    _check(plan, "publish")
    missing = missing_for_publish(plan.spec)
    if missing:
        raise FailedPrecondition(
            f"plan {plan.plan_id} is not complete: "
            + "; ".join(f"{v.field} {v.description}" for v in missing),
            reason="PLAN_INCOMPLETE",
            violations=missing,
        )
    calendar = PlanCalendar(plan.spec.time, plan.spec.time_zone, now)
    # At or after now: an immediate execution fires at the publish instant.
    first = calendar.next_decision(now - TICK)
    if isinstance(first, End) and first.at <= now:
        over = first.reason is EndReason.TERM_OVER
        field = "plan.time.term" if over else "plan.time.execution"
        raise FailedPrecondition(
            f"plan {plan.plan_id} would never act: {first.reason.value} "
            f"(nothing of its time lies ahead); change {field}",
            reason="TERM_OVER" if over else "NO_FIRE_AHEAD",
            violations=[FieldViolation(field, f"nothing lies ahead ({first.reason.value})")],
        )
    # Active when in effect and inside its term now; otherwise waiting for them.
    state = PlanState.ACTIVE if calendar.allowed(now) else PlanState.SCHEDULED
    fires = calendar.fires(now - TICK, 1)
    return replace(
        plan,
        state=state,
        revision=plan.revision + 1,
        update_by=by,
        update_time=now,
        publish_time=now,
        next_fire_time=fires[0] if fires else None,
        schedule_cursor=now - TICK,
        next_check_time=first.at,
    )


def request_approval(plan: Plan, by: str, now: datetime, audience: int, threshold: int) -> Plan:
    """A draft too large to publish alone (its next run's audience is above
    the shop's threshold) waits for an approver."""
    _check(plan, "publish")
    missing = missing_for_publish(plan.spec)
    if missing:
        publish(plan, by, now)  # says what is missing, as publishing does
    approval = Approval(by, now, audience, threshold)
    moved = _moved(plan, PlanState.AWAITING_APPROVAL, by, now)
    return replace(moved, approval=approval)


def approve(plan: Plan, by: str, now: datetime) -> Plan:
    """An approver other than the author publishes a plan awaiting approval."""
    approval = _awaiting(plan)
    if by == approval.requested_by:
        raise FailedPrecondition(
            f"plan {plan.plan_id} was put up for approval by {by}; another approver must "
            "approve it",
            reason="SELF_APPROVAL",
        )
    published = publish(replace(plan, state=PlanState.DRAFT), by, now)
    return replace(
        published, approval=replace(approval, decided_by=by, decide_time=now, approved=True)
    )


def reject(plan: Plan, by: str, now: datetime, reason: str) -> Plan:
    """An approver sends a plan awaiting approval back to its author, saying why."""
    approval = _awaiting(plan)
    decided = replace(approval, decided_by=by, decide_time=now, reject_reason=reason)
    return replace(_moved(plan, PlanState.DRAFT, by, now), approval=decided)


def _awaiting(plan: Plan) -> Approval:
    if plan.state is not PlanState.AWAITING_APPROVAL or plan.approval is None:
        raise FailedPrecondition(
            f"plan {plan.plan_id} is {plan.state.value}; only a plan awaiting approval "
            "can be approved or rejected",
            reason="NOT_AWAITING_APPROVAL",
        )
    return plan.approval


def pause(plan: Plan, by: str, now: datetime) -> Plan:
    _check(plan, "pause")
    return _moved(plan, PlanState.PAUSED, by, now)


def resume(plan: Plan, by: str, now: datetime) -> Plan:
    _check(plan, "resume")
    return _moved(plan, PlanState.ACTIVE, by, now)


def end(plan: Plan, by: str, now: datetime) -> Plan:
    if plan.state is PlanState.DRAFT:
        raise FailedPrecondition(
            f"plan {plan.plan_id} is a draft; delete it instead of ending it",
            reason="ILLEGAL_TRANSITION",
        )
    _check(plan, "end")
    return _ended(plan, by, now, ENDED_ON_REQUEST)


ENDED_ON_REQUEST = "ENDED_ON_REQUEST"
PLATFORM = "platform"  # who ends a plan whose time is over


def expire(plan: Plan, end: End, now: datetime) -> Plan:
    """Nothing of the plan's time lies ahead (the calendar's `End`) and its
    last run has ended: the platform ends it, saying why."""
    _check(plan, "end")
    return _ended(plan, PLATFORM, now, end.reason.value)


def _ended(plan: Plan, by: str, now: datetime, reason: str) -> Plan:
    return replace(
        _moved(plan, PlanState.ENDED, by, now),
        end_time=now,
        end_reason=reason,
        next_fire_time=None,
        next_check_time=None,
    )


def _moved(plan: Plan, state: PlanState, by: str, now: datetime) -> Plan:
    return replace(plan, state=state, revision=plan.revision + 1, update_by=by, update_time=now)


# What a published plan (scheduled, active or paused) may still change: what
# cannot alter who was or will be acted on, or how. Its audience, its
# execution time and its actions are fixed once members may have been acted
# on; to change them, end the plan and create a new one.
SAFE_WHEN_PUBLISHED = (
    "display_name",
    "description",
    "limits.rate_override",
    "limits.replenish_after_end",
    "limits.quiet_hours",
    "limits.total_budget",  # raised, or 0 for no budget; never lowered
    "time.term",  # a fixed period extended: starting no later, ending no earlier
)


def check_safe_change(plan: Plan, new: PlanSpec, paths: list[str]) -> None:
    if plan.state in (PlanState.DRAFT, PlanState.AWAITING_APPROVAL):
        return  # not published (a plan awaiting approval changed is a draft again)
    problems = [
        FieldViolation(
            f"update_mask.paths[{i}]",
            f"a {plan.state.value} plan can change only {json_paths(SAFE_WHEN_PUBLISHED)} "
            f"({JSON_NOTE}); end it and create a new plan to change the rest",
        )
        for i, path in enumerate(paths)
        if path not in SAFE_WHEN_PUBLISHED
    ]
    old_budget, new_budget = plan.spec.limits.total_budget, new.limits.total_budget
    if (
        "limits.total_budget" in paths
        and new_budget != 0
        and (old_budget == 0 or new_budget < old_budget)
    ):
        problems.append(
            FieldViolation(
                "plan.limits.total_budget", f"may only be raised from {old_budget or 'no budget'}"
            )
        )
    if "time.term" in paths and not _extends(plan.spec.time.term, new.time.term):
        problems.append(
            FieldViolation(
                "plan.time.term",
                "of a published plan may only be extended: a fixed period (type 2) starting "
                "no later and ending no earlier than the current one",
            )
        )
    if problems:
        raise FailedPrecondition(
            f"plan {plan.plan_id} is {plan.state.value}: "
            + "; ".join(f"{v.field} {v.description}" for v in problems),
            reason="UNSAFE_CHANGE",
            violations=problems,
        )


def _extends(old: str, new: str) -> bool:
    if not old or not new or old.startswith("@") or new.startswith("@"):
        return False  # only fixed periods (type 2) extend
    before, after = term.parse(old), term.parse(new)
    if (
        before.kind is not term.TermKind.FIXED_PERIOD
        or after.kind is not term.TermKind.FIXED_PERIOD
    ):
        return False
    (old_start, old_end), (new_start, new_end) = before.period, after.period
    return new_start <= old_start and new_end >= old_end
