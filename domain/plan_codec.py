"""Plans as plain JSON-able dicts, for storage and for the request log.

Versioned by the `v` key so stored plans survive changes of the model.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from domain import audience as a
from domain.plan import (
    Action,
    Approval,
    BenefitGrant,
    BenefitKind,
    FrequencyLimit,
    FrequencyWindow,
    FrontOffice,
    GrantBenefits,
    Measurement,
    MessageChannel,
    MissedFirePolicy,
    Plan,
    PlanLimits,
    PlanSpec,
    PlanState,
    PlanTime,
    QuietHours,
    QuietHoursPolicy,
    SendMessage,
)

FORMAT_VERSION = 1
UNSET = "unspecified"  # a product not chosen yet, as stored


def spec_to_dict(spec: PlanSpec) -> dict[str, Any]:
    limits = spec.limits
    quiet = limits.quiet_hours
    return {
        "v": FORMAT_VERSION,
        "display_name": spec.display_name,
        "description": spec.description,
        # Stored under the name of the enum it replaced, whose values were ids.
        "business_product": spec.product_id or UNSET,
        "front_office": spec.front_office.value,
        "time_zone": spec.time_zone,
        "audience": None if spec.audience is None else rule_to_dict(spec.audience),
        "time": {
            "effective": spec.time.effective,
            "term": spec.time.term,
            "execution": spec.time.execution,
            "missed_fire_policy": spec.time.missed_fire_policy.value,
        },
        "actions": [_action_to_dict(x) for x in spec.actions],
        "limits": {
            "frequency": {
                "max_times": limits.frequency.max_times,
                "window": limits.frequency.window.value,
            },
            "total_budget": limits.total_budget,
            "quiet_hours": None
            if quiet is None
            else {"start": quiet.start, "end": quiet.end, "policy": quiet.policy.value},
            "rate_override": limits.rate_override,
            "replenish_after_end": limits.replenish_after_end,
        },
        "measurement": {
            "holdout_percent": spec.measurement.holdout_percent,
            "attribution_seconds": int(spec.measurement.attribution_window.total_seconds()),
        },
    }


def spec_from_dict(d: dict[str, Any]) -> PlanSpec:
    if d.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown plan format version {d.get('v')!r}")
    t, lim = d["time"], d["limits"]
    quiet = lim["quiet_hours"]
    return PlanSpec(
        display_name=d["display_name"],
        description=d["description"],
        product_id="" if d["business_product"] == UNSET else d["business_product"],
        front_office=FrontOffice(d["front_office"]),
        time_zone=d["time_zone"],
        audience=None if d["audience"] is None else rule_from_dict(d["audience"]),
        time=PlanTime(
            effective=t["effective"],
            term=t["term"],
            execution=t["execution"],
            missed_fire_policy=MissedFirePolicy(t["missed_fire_policy"]),
        ),
        actions=tuple(_action_from_dict(x) for x in d["actions"]),
        limits=PlanLimits(
            frequency=FrequencyLimit(
                max_times=lim["frequency"]["max_times"],
                window=FrequencyWindow(lim["frequency"]["window"]),
            ),
            total_budget=lim["total_budget"],
            quiet_hours=None
            if quiet is None
            else QuietHours(quiet["start"], quiet["end"], QuietHoursPolicy(quiet["policy"])),
            rate_override=lim["rate_override"],
            # Absent from plans stored before it existed.
            replenish_after_end=lim.get("replenish_after_end", False),
        ),
        measurement=_measurement_from_dict(d.get("measurement")),
    )


def _measurement_from_dict(d: dict[str, Any] | None) -> Measurement:
    if d is None:  # stored before plans were measured
        return Measurement()
    return Measurement(d["holdout_percent"], timedelta(seconds=d["attribution_seconds"]))


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "shop_id": plan.shop_id,
        "plan_id": plan.plan_id,
        "spec": spec_to_dict(plan.spec),
        "state": plan.state.value,
        "revision": plan.revision,
        "create_by": plan.create_by,
        "create_time": plan.create_time.isoformat(),
        "update_by": plan.update_by,
        "update_time": plan.update_time.isoformat(),
        "template_id": plan.template_id,
        "publish_time": _iso(plan.publish_time),
        "end_time": _iso(plan.end_time),
        "next_fire_time": _iso(plan.next_fire_time),
        "end_reason": plan.end_reason,
        "schedule_cursor": _iso(plan.schedule_cursor),
        "next_check_time": _iso(plan.next_check_time),
        "approval": approval_to_dict(plan.approval),
    }


def approval_to_dict(approval: Approval | None) -> dict[str, Any] | None:
    if approval is None:
        return None
    return {
        "requested_by": approval.requested_by,
        "request_time": approval.request_time.isoformat(),
        "audience": approval.audience,
        "threshold": approval.threshold,
        "decided_by": approval.decided_by,
        "decide_time": _iso(approval.decide_time),
        "approved": approval.approved,
        "reject_reason": approval.reject_reason,
    }


def approval_from_dict(d: dict[str, Any] | None) -> Approval | None:
    if d is None:
        return None
    return Approval(
        requested_by=d["requested_by"],
        request_time=datetime.fromisoformat(d["request_time"]),
        audience=d["audience"],
        threshold=d["threshold"],
        decided_by=d["decided_by"],
        decide_time=_from_iso(d["decide_time"]),
        approved=d["approved"],
        reject_reason=d["reject_reason"],
    )


def plan_from_dict(d: dict[str, Any]) -> Plan:
    return Plan(
        shop_id=d["shop_id"],
        plan_id=d["plan_id"],
        spec=spec_from_dict(d["spec"]),
        state=PlanState(d["state"]),
        revision=d["revision"],
        create_by=d["create_by"],
        create_time=datetime.fromisoformat(d["create_time"]),
        update_by=d["update_by"],
        update_time=datetime.fromisoformat(d["update_time"]),
        template_id=d["template_id"],
        publish_time=_from_iso(d["publish_time"]),
        end_time=_from_iso(d["end_time"]),
        next_fire_time=_from_iso(d["next_fire_time"]),
        # Absent from what was stored before plans ended by themselves.
        end_reason=d.get("end_reason", ""),
        schedule_cursor=_from_iso(d.get("schedule_cursor")),
        next_check_time=_from_iso(d.get("next_check_time")),
        approval=approval_from_dict(d.get("approval")),
    )


def rule_to_dict(rule: a.Rule) -> dict[str, Any]:
    match rule:
        case a.Levels(levels):
            return {"levels": list(levels)}
        case a.Birthday(scope, days_ahead):
            return {"birthday": {"scope": scope.value, "days_ahead": days_ahead}}
        case a.Follower():
            return {"follower": {}}
        case a.BrowsedNotBought(days):
            return {"browsed_not_bought": {"within_days": days}}
        case a.CartedNotPaid(days):
            return {"carted_not_paid": {"within_days": days}}
        case a.Tags(tags, match_all):
            return {"tags": {"tags": list(tags), "match_all": match_all}}
        case a.AllOf(rules):
            return {"all_of": [rule_to_dict(r) for r in rules]}
        case a.AnyOf(rules):
            return {"any_of": [rule_to_dict(r) for r in rules]}
        case a.Not(sub):
            return {"not": rule_to_dict(sub)}
        case a.Members(ids):
            return {"members": list(ids)}
    raise TypeError(f"unknown rule {rule!r}")


def rule_from_dict(d: dict[str, Any]) -> a.Rule:
    ((kind, body),) = d.items()
    match kind:
        case "levels":
            return a.Levels(tuple(body))
        case "birthday":
            return a.Birthday(a.BirthdayScope(body["scope"]), body["days_ahead"])
        case "follower":
            return a.Follower()
        case "browsed_not_bought":
            return a.BrowsedNotBought(body["within_days"])
        case "carted_not_paid":
            return a.CartedNotPaid(body["within_days"])
        case "tags":
            return a.Tags(tuple(body["tags"]), body["match_all"])
        case "all_of":
            return a.AllOf(tuple(rule_from_dict(r) for r in body))
        case "any_of":
            return a.AnyOf(tuple(rule_from_dict(r) for r in body))
        case "not":
            return a.Not(rule_from_dict(body))
        case "members":
            return a.Members(tuple(body))
    raise ValueError(f"unknown rule kind {kind!r}")


def _action_to_dict(action: Action) -> dict[str, Any]:
    match action:
        case GrantBenefits(benefits):
            return {
                "grant_benefit": [
                    {"template_id": b.template_id, "kind": b.kind.value, "quantity": b.quantity}
                    for b in benefits
                ]
            }
        case SendMessage(channel, template_id, params):
            return {
                "send_message": {
                    "channel": channel.value,
                    "template_id": template_id,
                    "params": [list(p) for p in params],
                }
            }
    raise TypeError(f"unknown action {action!r}")


def _action_from_dict(d: dict[str, Any]) -> Action:
    if "grant_benefit" in d:
        return GrantBenefits(
            tuple(
                BenefitGrant(b["template_id"], BenefitKind(b["kind"]), b["quantity"])
                for b in d["grant_benefit"]
            )
        )
    body = d["send_message"]
    return SendMessage(
        MessageChannel(body["channel"]),
        body["template_id"],
        tuple((k, v) for k, v in body["params"]),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
