"""custops.plan.v1 messages <-> domain.plan."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from custops.plan.v1 import plan_pb2 as pb
from domain import plan as d
from domain.drafts import validate_spec
from domain.errors import FieldViolation, InvalidArgument, require
from domain.term.fields import YEAR
from domain.zones import DEFAULT_TIME_ZONE
from server.downstream.audience_rules import rule_from_proto, rule_to_proto
from server.downstream.wire import BENEFIT_KINDS, CHANNELS, timestamp

E = TypeVar("E", bound=enum.Enum)

# The deprecated BusinessProduct enum: the ids of the seed's six products.
BUSINESS_PRODUCTS = {
    pb.BUSINESS_PRODUCT_UNSPECIFIED: "",
    pb.BUSINESS_PRODUCT_BIRTHDAY: "birthday",
    pb.BUSINESS_PRODUCT_HOLIDAY: "holiday",
    pb.BUSINESS_PRODUCT_MEMBER_DAY: "member_day",
    pb.BUSINESS_PRODUCT_PRECISE_AUDIENCE: "precise_audience",
    pb.BUSINESS_PRODUCT_INTEREST_AUDIENCE: "interest_audience",
    pb.BUSINESS_PRODUCT_INTERACTIVE_FAN: "interactive_fan",
}
# Field-mask paths of the deprecated field, and what they mean now.
RENAMED_PATHS = {"business_product": "product_id"}


def renamed(paths: Iterable[str]) -> list[str]:
    """A field mask's paths as the plan's fields are named now."""
    return [RENAMED_PATHS.get(p, p) for p in paths]


FRONT_OFFICES = {
    pb.FRONT_OFFICE_UNSPECIFIED: d.FrontOffice.UNSPECIFIED,
    pb.FRONT_OFFICE_MICRO_MALL: d.FrontOffice.MICRO_MALL,
    pb.FRONT_OFFICE_RETAIL: d.FrontOffice.RETAIL,
    pb.FRONT_OFFICE_RETAIL_CHAIN: d.FrontOffice.RETAIL_CHAIN,
}
PLAN_STATES = {
    pb.PLAN_STATE_DRAFT: d.PlanState.DRAFT,
    pb.PLAN_STATE_SCHEDULED: d.PlanState.SCHEDULED,
    pb.PLAN_STATE_ACTIVE: d.PlanState.ACTIVE,
    pb.PLAN_STATE_PAUSED: d.PlanState.PAUSED,
    pb.PLAN_STATE_ENDED: d.PlanState.ENDED,
    pb.PLAN_STATE_AWAITING_APPROVAL: d.PlanState.AWAITING_APPROVAL,
}
MISSED_FIRE = {
    pb.MISSED_FIRE_POLICY_UNSPECIFIED: d.MissedFirePolicy.RUN_ONCE,
    pb.MISSED_FIRE_POLICY_RUN_ONCE: d.MissedFirePolicy.RUN_ONCE,
    pb.MISSED_FIRE_POLICY_SKIP: d.MissedFirePolicy.SKIP,
}
FREQUENCY_WINDOWS = {
    pb.FREQUENCY_WINDOW_UNSPECIFIED: d.FrequencyWindow.UNSPECIFIED,
    pb.FREQUENCY_WINDOW_PERIOD: d.FrequencyWindow.PERIOD,
    pb.FREQUENCY_WINDOW_BIRTHDAY_YEAR: d.FrequencyWindow.BIRTHDAY_YEAR,
    pb.FREQUENCY_WINDOW_PLAN: d.FrequencyWindow.PLAN,
}
QUIET_POLICIES = {
    pb.QUIET_HOURS_POLICY_UNSPECIFIED: d.QuietHoursPolicy.DEFER,
    pb.QUIET_HOURS_POLICY_DEFER: d.QuietHoursPolicy.DEFER,
    pb.QUIET_HOURS_POLICY_DROP: d.QuietHoursPolicy.DROP,
}

# The throttles' downstream systems by their contract numbers.
DOWNSTREAM_NAMES = {
    pb.DOWNSTREAM_AUDIENCE: "audience",
    pb.DOWNSTREAM_BENEFIT: "benefit",
    pb.DOWNSTREAM_NOTIFICATION: "notification",
}


class _Violations:
    """Collects every problem met while reading a message, so that one
    INVALID_ARGUMENT names them all."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def enum(self, mapping: Mapping[Any, E], value: int, path: str, default: E) -> E:
        if value in mapping:
            return mapping[value]
        self.items.append(FieldViolation(path, f"unknown enum value {value}"))
        return default


def spec_from_proto(msg: pb.Plan, path: str = "plan", *, check: bool = True) -> d.PlanSpec:
    """The domain spec of a plan message; InvalidArgument names every bad field.

    With `check=False` only what cannot be represented is refused (unknown
    enum values, malformed rules); the draft rules are left to the caller."""
    v = _Violations()
    audience = None
    if msg.HasField("audience"):
        try:
            audience = rule_from_proto(msg.audience, f"{path}.audience")
        except InvalidArgument as exc:
            v.items += exc.violations
    actions: list[d.Action] = []
    positions: list[int] = []  # request index of each action kept
    for i, action in enumerate(msg.actions):
        where = f"{path}.actions[{i}]"
        kind = action.WhichOneof("kind")
        if kind is not None:
            positions.append(i)
        if kind == "grant_benefit":
            actions.append(
                d.GrantBenefits(
                    tuple(
                        d.BenefitGrant(
                            b.template_id,
                            v.enum(
                                BENEFIT_KINDS,
                                b.kind,
                                f"{where}.grant_benefit.benefits[{j}].kind",
                                d.BenefitKind.UNSPECIFIED,
                            ),
                            b.quantity,
                        )
                        for j, b in enumerate(action.grant_benefit.benefits)
                    )
                )
            )
        elif kind == "send_message":
            m = action.send_message
            actions.append(
                d.SendMessage(
                    v.enum(
                        CHANNELS,
                        m.channel,
                        f"{where}.send_message.channel",
                        d.MessageChannel.UNSPECIFIED,
                    ),
                    m.template_id,
                    tuple(sorted(m.params.items())),
                )
            )
        else:
            v.items.append(FieldViolation(where, "must set grant_benefit or send_message"))
    lim = msg.limits
    quiet = None
    if lim.HasField("quiet_hours"):
        quiet = d.QuietHours(
            lim.quiet_hours.start,
            lim.quiet_hours.end,
            v.enum(
                QUIET_POLICIES,
                lim.quiet_hours.policy,
                f"{path}.limits.quiet_hours.policy",
                d.QuietHoursPolicy.DEFER,
            ),
        )
    spec = d.PlanSpec(
        display_name=msg.display_name,
        description=msg.description,
        product_id=msg.product_id or _product_of_enum(v, msg.business_product, path),
        front_office=v.enum(
            FRONT_OFFICES, msg.front_office, f"{path}.front_office", d.FrontOffice.UNSPECIFIED
        ),
        time_zone=msg.time_zone or DEFAULT_TIME_ZONE,
        audience=audience,
        time=d.PlanTime(
            effective=msg.time.effective,
            term=msg.time.term,
            execution=msg.time.execution,
            missed_fire_policy=v.enum(
                MISSED_FIRE,
                msg.time.missed_fire_policy,
                f"{path}.time.missed_fire_policy",
                d.MissedFirePolicy.RUN_ONCE,
            ),
        ),
        actions=tuple(actions),
        limits=d.PlanLimits(
            frequency=d.FrequencyLimit(
                max_times=lim.frequency.max_times,
                window=v.enum(
                    FREQUENCY_WINDOWS,
                    lim.frequency.window,
                    f"{path}.limits.frequency.window",
                    d.FrequencyWindow.UNSPECIFIED,
                ),
            ),
            total_budget=lim.total_budget,
            quiet_hours=quiet,
            rate_override=lim.rate_override,
            replenish_after_end=lim.replenish_after_end,
        ),
        measurement=_measurement(v, msg.measurement, f"{path}.measurement"),
    )
    domain_violations = validate_spec(spec, path) if check else []
    require(v.items + [_renumber(x, f"{path}.actions", positions) for x in domain_violations])
    return spec


def _renumber(violation: FieldViolation, prefix: str, positions: list[int]) -> FieldViolation:
    """Name an action by its index in the request, not in the kept actions."""
    match = re.match(re.escape(prefix) + r"\[(\d+)\](.*)", violation.field)
    if match is None:
        return violation
    index = positions[int(match.group(1))]
    return FieldViolation(f"{prefix}[{index}]{match.group(2)}", violation.description)


def plan_to_proto(plan: d.Plan) -> pb.Plan:
    msg = spec_to_proto(plan.spec)
    msg.name = f"shops/{plan.shop_id}/plans/{plan.plan_id}"
    msg.plan_id, msg.shop_id = plan.plan_id, plan.shop_id
    msg.state = _PLAN_STATES_BACK[plan.state]
    msg.etag, msg.template_id = plan.etag, plan.template_id
    msg.end_reason = plan.end_reason
    if plan.approval is not None:
        msg.approval.CopyFrom(_approval_to_proto(plan.approval))
    msg.create_by, msg.update_by = plan.create_by, plan.update_by
    msg.create_time.CopyFrom(timestamp(plan.create_time))
    msg.update_time.CopyFrom(timestamp(plan.update_time))
    for attr in ("publish_time", "end_time", "next_fire_time"):
        value = getattr(plan, attr)
        if value is not None:
            getattr(msg, attr).CopyFrom(timestamp(value))
    return msg


def _approval_to_proto(approval: d.Approval) -> pb.PlanApproval:
    out = pb.PlanApproval(
        requested_by=approval.requested_by,
        request_time=timestamp(approval.request_time),
        audience_estimate=approval.audience,
        threshold=approval.threshold,
        decided_by=approval.decided_by,
        approved=approval.approved,
        reject_reason=approval.reject_reason,
    )
    if approval.decide_time is not None:
        out.decide_time.CopyFrom(timestamp(approval.decide_time))
    return out


def spec_to_proto(spec: d.PlanSpec) -> pb.Plan:
    """The merchant-written part of a plan (no identity, state or times)."""
    msg = pb.Plan(
        display_name=spec.display_name,
        description=spec.description,
        product_id=spec.product_id,
        business_product=business_product_to_proto(spec.product_id),  # type: ignore[arg-type]
        front_office=_FRONT_OFFICES_BACK[spec.front_office],
        time_zone=spec.time_zone,
        time=pb.PlanTime(
            effective=spec.time.effective,
            term=spec.time.term,
            execution=spec.time.execution,
            missed_fire_policy=_MISSED_FIRE_BACK[spec.time.missed_fire_policy],
        ),
        actions=[_action_to_proto(a) for a in spec.actions],
        limits=pb.PlanLimits(
            frequency=pb.FrequencyLimit(
                max_times=spec.limits.frequency.max_times,
                window=_FREQUENCY_WINDOWS_BACK[spec.limits.frequency.window],
            ),
            total_budget=spec.limits.total_budget,
            rate_override=spec.limits.rate_override,
            replenish_after_end=spec.limits.replenish_after_end,
        ),
    )
    if spec.audience is not None:
        msg.audience.CopyFrom(rule_to_proto(spec.audience))
    msg.measurement.holdout_percent = spec.measurement.holdout_percent
    msg.measurement.attribution_window.FromTimedelta(spec.measurement.attribution_window)
    quiet = spec.limits.quiet_hours
    if quiet is not None:
        msg.limits.quiet_hours.CopyFrom(
            pb.QuietHours(
                start=quiet.start, end=quiet.end, policy=_QUIET_POLICIES_BACK[quiet.policy]
            )
        )
    return msg


def _measurement(v: _Violations, msg: pb.PlanMeasurement, path: str) -> d.Measurement:
    share = msg.holdout_percent
    if not 0.0 <= share <= d.MAX_HOLDOUT_PERCENT:  # NaN fails too
        v.items.append(
            FieldViolation(f"{path}.holdout_percent", "a percentage from 0 to 50 (0: no holdout)")
        )
        share = 0.0
    window = d.DEFAULT_ATTRIBUTION_WINDOW
    if msg.HasField("attribution_window"):
        given = msg.attribution_window
        shortest, longest = d.ATTRIBUTION_WINDOW_RANGE
        if given.seconds < 0 or given.nanos < 0 or given.nanos >= 10**9:
            v.items.append(FieldViolation(f"{path}.attribution_window", "a positive duration"))
        elif not shortest.total_seconds() <= given.seconds <= longest.total_seconds():
            v.items.append(FieldViolation(f"{path}.attribution_window", "from 1 hour to 90 days"))
        else:
            window = given.ToTimedelta()
    return d.Measurement(share, window)


def front_office_to_proto(office: d.FrontOffice) -> int:
    return int(_FRONT_OFFICES_BACK[office])


def benefit_kind_to_proto(kind: d.BenefitKind) -> int:
    return int(_BENEFIT_KINDS_BACK[kind])


def business_product_to_proto(product_id: str) -> int:
    """The deprecated enum's value of a product: UNSPECIFIED for any product
    that is not one of the seed's six."""
    return int(_BUSINESS_PRODUCTS_BACK.get(product_id, pb.BUSINESS_PRODUCT_UNSPECIFIED))


def _product_of_enum(v: _Violations, value: int, path: str) -> str:
    """The id the deprecated enum names (an old client's request)."""
    product: str | None = BUSINESS_PRODUCTS.get(value)  # type: ignore[call-overload]
    if product is not None:
        return product
    v.items.append(FieldViolation(f"{path}.business_product", f"unknown enum value {value}"))
    return ""


def _action_to_proto(action: d.Action) -> pb.Action:
    match action:
        case d.GrantBenefits(benefits):
            return pb.Action(
                grant_benefit=pb.GrantBenefitAction(
                    benefits=[
                        pb.BenefitGrant(
                            template_id=b.template_id,
                            kind=_BENEFIT_KINDS_BACK[b.kind],
                            quantity=b.quantity,
                        )
                        for b in benefits
                    ]
                )
            )
        case d.SendMessage(channel, template_id, params):
            return pb.Action(
                send_message=pb.SendMessageAction(
                    channel=_CHANNELS_BACK[channel], template_id=template_id, params=dict(params)
                )
            )
    raise TypeError(f"unknown action {action!r}")


_EARLIEST = datetime(YEAR.low, 1, 1, tzinfo=UTC).timestamp()
_LATEST = datetime(YEAR.high + 1, 1, 1, tzinfo=UTC).timestamp()


def in_term_years(seconds: float) -> bool:
    """Whether an instant (Unix seconds) lies in the years term expressions
    can name; checked on the number, as a Timestamp can hold more than
    datetime can."""
    return _EARLIEST <= seconds < _LATEST


def _back(mapping: Mapping[Any, E]) -> dict[E, Any]:
    # The highest proto number wins, so an UNSPECIFIED alias never shadows
    # the explicit value (MISSED_FIRE_POLICY_RUN_ONCE, not ..._UNSPECIFIED).
    out: dict[E, Any] = {}
    for number, value in sorted(mapping.items()):
        out[value] = number
    return out


_BUSINESS_PRODUCTS_BACK = {product: number for number, product in BUSINESS_PRODUCTS.items()}
_FRONT_OFFICES_BACK = _back(FRONT_OFFICES)
_PLAN_STATES_BACK = _back(PLAN_STATES)
_BENEFIT_KINDS_BACK = _back(BENEFIT_KINDS)
_CHANNELS_BACK = _back(CHANNELS)
_MISSED_FIRE_BACK = _back(MISSED_FIRE)
_FREQUENCY_WINDOWS_BACK = _back(FREQUENCY_WINDOWS)
_QUIET_POLICIES_BACK = _back(QUIET_POLICIES)
