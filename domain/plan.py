"""The operation plan: audience x time x actions, plus limits and a lifecycle.

This module holds the plan's shape and the checks every draft must pass.
A draft may be incomplete (merchants save as they go); what a plan must hold
before it can be published, and which changes a published plan allows, are
the lifecycle's rules.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from domain.audience import Rule, validate_rule
from domain.calculators import violations as time_violations
from domain.errors import Aborted, FailedPrecondition, FieldViolation, require
from domain.zones import DEFAULT_TIME_ZONE, is_time_zone

MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 2000
MAX_ACTIONS = 20
MAX_BENEFITS_PER_ACTION = 20
MAX_PARAMS = 50
MAX_ID_LENGTH = 64
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# A product id: what a template file may name its product, and a column holds.
PRODUCT_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")


class PlanState(enum.Enum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"
    AWAITING_APPROVAL = "awaiting"  # for approval: its audience is above the shop's threshold


class FrontOffice(enum.Enum):
    UNSPECIFIED = "unspecified"
    MICRO_MALL = "micro_mall"
    RETAIL = "retail"
    RETAIL_CHAIN = "retail_chain"


class BenefitKind(enum.Enum):
    UNSPECIFIED = "unspecified"
    POINTS = "points"
    COUPON = "coupon"
    FREE_SHIPPING = "free_shipping"
    DISCOUNT = "discount"
    POINTS_MULTIPLIER = "points_multiplier"
    GIFT = "gift"
    PAID_CONTENT = "paid_content"
    EXPERIENCE_CARD = "experience_card"
    GROWTH_VALUE = "growth_value"
    PACKAGE = "package"


# Benefits that act on orders while the plan's effects hold (its effect
# window, domain.plan_calendar), rather than being held and used once.
EFFECT_KINDS = (BenefitKind.DISCOUNT, BenefitKind.POINTS_MULTIPLIER, BenefitKind.FREE_SHIPPING)


class MessageChannel(enum.Enum):
    UNSPECIFIED = "unspecified"
    SMS = "sms"
    OFFICIAL_ACCOUNT = "official_account"
    APP_PUSH = "app_push"
    IN_APP = "in_app"


class MissedFirePolicy(enum.Enum):
    RUN_ONCE = "run_once"
    SKIP = "skip"


class FrequencyWindow(enum.Enum):
    UNSPECIFIED = "unspecified"
    PERIOD = "period"
    BIRTHDAY_YEAR = "birthday_year"
    PLAN = "plan"


class QuietHoursPolicy(enum.Enum):
    DEFER = "defer"
    DROP = "drop"


@dataclass(frozen=True)
class PlanTime:
    """The three time notions, each a term expression ("" = not set yet)."""

    effective: str = ""
    term: str = ""
    execution: str = ""
    missed_fire_policy: MissedFirePolicy = MissedFirePolicy.RUN_ONCE


@dataclass(frozen=True)
class BenefitGrant:
    template_id: str
    kind: BenefitKind
    quantity: int


@dataclass(frozen=True)
class GrantBenefits:
    benefits: tuple[BenefitGrant, ...]


@dataclass(frozen=True)
class SendMessage:
    channel: MessageChannel
    template_id: str
    params: tuple[tuple[str, str], ...] = ()


Action = GrantBenefits | SendMessage


@dataclass(frozen=True)
class FrequencyLimit:
    max_times: int = 0
    window: FrequencyWindow = FrequencyWindow.UNSPECIFIED


@dataclass(frozen=True)
class QuietHours:
    start: str
    end: str
    policy: QuietHoursPolicy = QuietHoursPolicy.DEFER


@dataclass(frozen=True)
class PlanLimits:
    frequency: FrequencyLimit = FrequencyLimit()
    total_budget: int = 0
    quiet_hours: QuietHours | None = None
    rate_override: float = 0.0
    # Give a used benefit back when its order is refunded after the plan ended.
    replenish_after_end: bool = False


@dataclass(frozen=True)
class PlanSpec:
    """What a merchant writes: everything of a plan except identity and state."""

    display_name: str
    description: str = ""
    # The business product, by its id in the product catalog ("" = not set
    # yet): products are data (server/products/*.toml), not a closed list.
    product_id: str = ""
    front_office: FrontOffice = FrontOffice.UNSPECIFIED
    time_zone: str = DEFAULT_TIME_ZONE
    audience: Rule | None = None
    time: PlanTime = PlanTime()
    actions: tuple[Action, ...] = ()
    limits: PlanLimits = PlanLimits()


# Field-mask paths a merchant may change on a draft: the plan's parts, and
# the parts of its time and limits one by one (e.g. "limits.total_budget").
UPDATABLE_FIELDS: tuple[str, ...] = (
    "display_name",
    "description",
    "product_id",
    "front_office",
    "time_zone",
    "audience",
    "time",
    "time.effective",
    "time.term",
    "time.execution",
    "time.missed_fire_policy",
    "actions",
    "limits",
    "limits.frequency",
    "limits.total_budget",
    "limits.quiet_hours",
    "limits.rate_override",
    "limits.replenish_after_end",
)


@dataclass(frozen=True)
class Approval:
    """Who asked to publish a large plan, and who decided."""

    requested_by: str
    request_time: datetime
    audience: int  # the next run's audience estimate
    threshold: int  # the shop's, when asked
    decided_by: str = ""
    decide_time: datetime | None = None
    approved: bool = False
    reject_reason: str = ""


@dataclass(frozen=True)
class Plan:
    shop_id: str
    plan_id: str
    spec: PlanSpec
    state: PlanState
    revision: int
    create_by: str
    create_time: datetime
    update_by: str
    update_time: datetime
    template_id: str = ""
    publish_time: datetime | None = None
    end_time: datetime | None = None
    next_fire_time: datetime | None = None  # the next fire that counts, shown to merchants
    end_reason: str = ""  # once ended: why (ENDED_ON_REQUEST, or the calendar's EndReason)
    # The scheduler's place (domain.scheduling): decisions are made up to
    # and including `schedule_cursor`; the next is due at `next_check_time`.
    schedule_cursor: datetime | None = None
    next_check_time: datetime | None = None
    approval: Approval | None = None

    @property
    def etag(self) -> str:
        return etag_of(self.revision)

    def check_etag(self, etag: str) -> None:
        """An empty etag skips the check; a stale one means someone else changed the plan."""
        if etag and etag != self.etag:
            raise Aborted(
                f"plan {self.plan_id} was changed concurrently (etag {etag} is not the "
                f"current {self.etag}); get it again and retry",
                reason="ETAG_MISMATCH",
            )

    def updated(self, spec: PlanSpec, by: str, at: datetime) -> Plan:
        """The plan with a new spec; which changes a published plan allows is
        lifecycle.check_safe_change's to say."""
        if self.state is PlanState.ENDED:
            raise FailedPrecondition(
                f"plan {self.plan_id} has ended; it can no longer change",
                reason="PLAN_NOT_EDITABLE",
            )
        check = self.next_check_time
        if self.state is not PlanState.DRAFT and spec.time != self.spec.time:
            check = at  # the scheduler looks at the new time at once
        # A plan changed while awaiting approval is a draft again: what the
        # approver would approve is not what was asked for.
        waiting = self.state is PlanState.AWAITING_APPROVAL
        return replace(
            self,
            spec=spec,
            state=PlanState.DRAFT if waiting else self.state,
            approval=None if waiting else self.approval,
            revision=self.revision + 1,
            update_by=by,
            update_time=at,
            next_check_time=check,
        )

    def check_deletable(self) -> None:
        if self.state not in (PlanState.DRAFT, PlanState.AWAITING_APPROVAL):
            raise FailedPrecondition(
                f"plan {self.plan_id} is {self.state.value}; published plans are ended, "
                "never deleted, because records point to them",
                reason="PLAN_NOT_DELETABLE",
            )


def etag_of(revision: int) -> str:
    return f"r{revision}"


def new_plan(
    shop_id: str, plan_id: str, spec: PlanSpec, by: str, at: datetime, template_id: str = ""
) -> Plan:
    require(validate_spec(spec))
    return Plan(
        shop_id=shop_id,
        plan_id=plan_id,
        spec=spec,
        state=PlanState.DRAFT,
        revision=1,
        create_by=by,
        create_time=at,
        update_by=by,
        update_time=at,
        template_id=template_id,
    )


def apply_mask(spec: PlanSpec, changes: PlanSpec, paths: list[str]) -> PlanSpec:
    """`spec` with the fields named by `paths` taken from `changes`."""
    violations = []
    if not paths:
        violations.append(
            FieldViolation("update_mask", "must name at least one field, e.g. 'display_name'")
        )
    for i, path in enumerate(paths):
        if path not in UPDATABLE_FIELDS:
            violations.append(
                FieldViolation(
                    f"update_mask.paths[{i}]",
                    f"'{path}' cannot be updated; updatable: {', '.join(UPDATABLE_FIELDS)}",
                )
            )
    require(violations)
    updated = spec
    for path in paths:
        updated = _copy_path(updated, changes, path.split("."))
    require(validate_spec(updated))
    return updated


def _copy_path(target: Any, source: Any, parts: list[str]) -> Any:
    """`target` with the attribute at `parts` taken from `source`."""
    head, rest = parts[0], parts[1:]
    value = getattr(source, head)
    if rest:
        value = _copy_path(getattr(target, head), value, rest)
    return replace(target, **{head: value})


def validate_spec(spec: PlanSpec, path: str = "plan") -> list[FieldViolation]:
    """Every shape problem of a draft, each named by its field path."""
    out: list[FieldViolation] = []
    name = spec.display_name.strip()
    if not name or len(spec.display_name) > MAX_NAME_LENGTH:
        out.append(
            FieldViolation(f"{path}.display_name", f"required, 1 to {MAX_NAME_LENGTH} characters")
        )
    if len(spec.description) > MAX_DESCRIPTION_LENGTH:
        out.append(
            FieldViolation(f"{path}.description", f"at most {MAX_DESCRIPTION_LENGTH} characters")
        )
    if spec.product_id and not PRODUCT_ID.fullmatch(spec.product_id):
        out.append(
            FieldViolation(
                f"{path}.product_id",
                "a product id: a lower-case letter, then up to 31 of a-z, 0-9 and _",
            )
        )
    out += _time_zone(spec.time_zone, f"{path}.time_zone")
    if spec.audience is not None:
        out += validate_rule(spec.audience, f"{path}.audience")
    for attr in ("effective", "term", "execution"):
        value = getattr(spec.time, attr)
        if value:
            out += [
                FieldViolation(f"{path}.time.{attr}.{v.field}", v.description)
                for v in time_violations(value)
            ]
    if len(spec.actions) > MAX_ACTIONS:
        out.append(FieldViolation(f"{path}.actions", f"at most {MAX_ACTIONS} actions"))
    for i, action in enumerate(spec.actions):
        out += _action(action, f"{path}.actions[{i}]")
    out += _limits(spec.limits, f"{path}.limits")
    return out


def _time_zone(zone: str, path: str) -> list[FieldViolation]:
    if not is_time_zone(zone):
        shown = zone if len(zone) <= 40 else zone[:40] + "..."
        return [
            FieldViolation(path, f"must be an IANA time zone such as Asia/Shanghai, got {shown!r}")
        ]
    return []


def _identifier(value: str, path: str) -> list[FieldViolation]:
    if not value.strip() or len(value) > MAX_ID_LENGTH:
        return [FieldViolation(path, f"required, 1 to {MAX_ID_LENGTH} characters")]
    return []


def _action(action: Action, path: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    match action:
        case GrantBenefits(benefits):
            where = f"{path}.grant_benefit.benefits"
            if not benefits:
                out.append(FieldViolation(where, "must grant at least one benefit"))
            if len(benefits) > MAX_BENEFITS_PER_ACTION:
                out.append(FieldViolation(where, f"at most {MAX_BENEFITS_PER_ACTION} benefits"))
            for j, grant in enumerate(benefits):
                out += _identifier(grant.template_id, f"{where}[{j}].template_id")
                if grant.kind is BenefitKind.UNSPECIFIED:
                    out.append(FieldViolation(f"{where}[{j}].kind", "required"))
                if grant.quantity < 1:
                    out.append(
                        FieldViolation(
                            f"{where}[{j}].quantity", f"must be >= 1, got {grant.quantity}"
                        )
                    )
        case SendMessage(channel, template_id, params):
            where = f"{path}.send_message"
            if channel is MessageChannel.UNSPECIFIED:
                out.append(FieldViolation(f"{where}.channel", "required"))
            out += _identifier(template_id, f"{where}.template_id")
            if len(params) > MAX_PARAMS:
                out.append(FieldViolation(f"{where}.params", f"at most {MAX_PARAMS} parameters"))
    return out


def _limits(limits: PlanLimits, path: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if limits.frequency.max_times < 0:
        out.append(FieldViolation(f"{path}.frequency.max_times", "must be >= 0"))
    if limits.frequency.max_times > 0 and limits.frequency.window is FrequencyWindow.UNSPECIFIED:
        out.append(FieldViolation(f"{path}.frequency.window", "required when max_times is set"))
    if limits.total_budget < 0:
        out.append(FieldViolation(f"{path}.total_budget", "must be >= 0 (0 = no budget)"))
    if not math.isfinite(limits.rate_override) or limits.rate_override < 0:
        out.append(
            FieldViolation(f"{path}.rate_override", "must be a number >= 0 (0 = downstream's rate)")
        )
    quiet = limits.quiet_hours
    if quiet is not None:
        for attr in ("start", "end"):
            value = getattr(quiet, attr)
            if not _HH_MM.match(value):
                out.append(
                    FieldViolation(f"{path}.quiet_hours.{attr}", f"must be HH:MM, got {value!r}")
                )
        if quiet.start == quiet.end and _HH_MM.match(quiet.start):
            out.append(FieldViolation(f"{path}.quiet_hours.end", "must differ from start"))
    return out
