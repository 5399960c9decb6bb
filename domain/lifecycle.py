"""A plan's lifecycle: draft -> scheduled -> active <-> paused -> ended.

Only the transitions below exist; every one bumps the plan's revision (its
etag). Publishing checks that the draft is complete; the move from
scheduled to active when the effective time comes, and to ended when the
operation term is over, belong to the scheduler, which calls `activate`
and `expire`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from domain import plan_schedule, term
from domain.errors import FailedPrecondition, FieldViolation
from domain.plan import BusinessProduct, FrontOffice, Plan, PlanSpec, PlanState

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
    if spec.business_product is BusinessProduct.UNSPECIFIED:
        out.append(FieldViolation(f"{path}.business_product", "required to publish"))
    if spec.front_office is FrontOffice.UNSPECIFIED:
        out.append(FieldViolation(f"{path}.front_office", "required to publish"))
    if spec.audience is None:
        out.append(FieldViolation(f"{path}.audience", "required to publish"))
    if not spec.time.execution:
        out.append(FieldViolation(f"{path}.time.execution", "required to publish"))
    if not spec.actions:
        out.append(FieldViolation(f"{path}.actions", "at least one action to publish"))
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
    time, zone = plan.spec.time, plan.spec.time_zone
    if time.term:
        ahead = term.windows(
            term.parse(time.term), now, now + term.schedule.HORIZON, zone, now, limit=1
        )
        if not ahead:
            raise FailedPrecondition(
                f"plan {plan.plan_id}'s operation term is over; change plan.time.term",
                reason="TERM_OVER",
                violations=[FieldViolation("plan.time.term", "has no window from now on")],
            )
    # Active when in effect and inside its term now; otherwise waiting for them.
    in_effect = not time.effective or term.is_active(term.parse(time.effective), now, zone, now)
    in_term = not time.term or term.is_active(term.parse(time.term), now, zone, now)
    state = PlanState.ACTIVE if in_effect and in_term else PlanState.SCHEDULED
    # At or after now: an immediate execution fires at the publish instant.
    fires = plan_schedule.next_fire_times(time, zone, now - timedelta(microseconds=1), 1, now)
    return replace(
        plan,
        state=state,
        revision=plan.revision + 1,
        update_by=by,
        update_time=now,
        publish_time=now,
        next_fire_time=fires[0] if fires else None,
    )


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
    return replace(_moved(plan, PlanState.ENDED, by, now), end_time=now, next_fire_time=None)


def _moved(plan: Plan, state: PlanState, by: str, now: datetime) -> Plan:
    return replace(plan, state=state, revision=plan.revision + 1, update_by=by, update_time=now)
