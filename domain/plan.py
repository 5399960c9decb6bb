"""The operation plan: audience x time x actions, plus limits and a lifecycle.

This module holds the plan's shape; making a draft, the checks every draft
must pass and changes by field mask are domain.drafts. A draft may be
incomplete (merchants save as they go); what a plan must hold before it can
be published, and which changes a published plan allows, are the
lifecycle's rules.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from domain.audience import Rule
from domain.errors import Aborted, FailedPrecondition
from domain.zones import DEFAULT_TIME_ZONE

MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 2000
MAX_ACTIONS = 20
MAX_BENEFITS_PER_ACTION = 20
MAX_PARAMS = 50
MAX_ID_LENGTH = 64
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


# Measurement: a control group of at most half the audience, and the window
# in which an order counts for the plan (docs/outcomes.md).
MAX_HOLDOUT_PERCENT = 50.0
DEFAULT_ATTRIBUTION_WINDOW = timedelta(days=7)
ATTRIBUTION_WINDOW_RANGE = (timedelta(hours=1), timedelta(days=90))


@dataclass(frozen=True)
class Measurement:
    holdout_percent: float = 0.0
    attribution_window: timedelta = DEFAULT_ATTRIBUTION_WINDOW


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
    measurement: Measurement = Measurement()


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
    "measurement",
    "measurement.holdout_percent",
    "measurement.attribution_window",
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
