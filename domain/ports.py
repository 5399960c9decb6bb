"""What the domain needs from outside, as protocols the server implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.audience import Rule
from domain.plan import BenefitKind, FrontOffice, MessageChannel, Plan, PlanState
from domain.runs import Run
from domain.shop_policy import ShopPolicy


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, time-zone aware."""
        ...


@dataclass(frozen=True)
class PlanFilter:
    state: PlanState | None = None
    product_id: str = ""
    front_office: FrontOffice | None = None
    # Case-insensitive substring of the display name; "" = any.
    name_contains: str = ""


@dataclass(frozen=True)
class PlanCursor:
    """Position after the last plan of a page (plans are listed newest first)."""

    create_time: datetime
    plan_id: str


class PlanRepository(Protocol):
    async def add(self, plan: Plan) -> None: ...

    async def get(self, shop_id: str, plan_id: str) -> Plan | None:
        """The plan, or None when it does not exist in this shop."""
        ...

    async def list(
        self, shop_id: str, filter: PlanFilter, after: PlanCursor | None, limit: int
    ) -> Sequence[Plan]: ...

    async def save(self, plan: Plan, before: Plan) -> None:
        """Store a changed plan read as `before`; raise Aborted if its stored
        revision moved on since."""
        ...

    async def delete(self, plan: Plan) -> None:
        """Delete a draft as it was read; raise Aborted if it changed since."""
        ...

    async def due(
        self, now: datetime, limit: int, only: tuple[str, str] | None = None
    ) -> Sequence[Plan]:
        """Active and scheduled plans whose next decision is due, earliest
        first (or only the plan `only` names: shop id, plan id), each held
        for this transaction: a replica's tick waits for another's on the
        same plans, then finds them moved on."""
        ...

    async def states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PlanState]:
        """The current state of each (shop id, plan id) that exists."""
        ...

    async def advance(self, moves: Sequence[tuple[Plan, SchedulePlace]]) -> None:
        """Move the scheduler's place in each plan on from the one it was
        read with (a plan someone else moved first stays as they left it)."""
        ...


@dataclass(frozen=True)
class SchedulePlace:
    """Where the scheduler stands in a plan (domain.scheduling.Step)."""

    cursor: datetime
    next_check: datetime | None
    next_fire: datetime | None
    activate: bool  # a run started: a scheduled plan becomes active


@dataclass(frozen=True)
class RunLaunch:
    """A run to make with the job that carries it out (`run.job_id`)."""

    run: Run
    job_kind: str
    payload: Mapping[str, Any]
    cursors: tuple[str, ...]  # one per shard
    total: int  # items, when known up front (else filled in later)


class RunLaunches(Protocol):
    async def add(self, launches: Sequence[RunLaunch], now: datetime) -> set[str]:
        """Each run with its job, once; the ids of the runs made now."""
        ...

    async def add_skipped(self, skipped: Sequence[Run]) -> None:
        """Skipped fires (runs without a job), once each."""
        ...


@dataclass(frozen=True)
class RequestKey:
    """A side-effecting call's request id, and a fingerprint of what it asked."""

    operation: str
    request_id: str
    fingerprint: str


class RequestLog(Protocol):
    """Remembers the outcome of side-effecting calls by request id."""

    async def find(self, shop_id: str, key: RequestKey) -> dict[str, Any] | None:
        """The first outcome under this key, or None; InvalidArgument if the
        id was used for a different request."""
        ...

    async def reserve(self, shop_id: str, key: RequestKey) -> None:
        """Claim the key before the change; raise DuplicateRequest if a
        concurrent call holds it (it waits for that call to finish first)."""
        ...

    async def complete(self, shop_id: str, key: RequestKey, outcome: dict[str, Any]) -> None:
        """Store the outcome under a key this transaction reserved."""
        ...


class ShopPolicies(Protocol):
    """Shops' policies (domain.shop_policy)."""

    async def get(self, shop_id: str) -> ShopPolicy:
        """The shop's policy; no limits (revision 0) when it set none."""
        ...

    async def save(self, policy: ShopPolicy, before: ShopPolicy) -> None:
        """`before` as read, now `policy`; Aborted when it changed meanwhile."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the repositories; commits only when asked."""

    @property
    def plans(self) -> PlanRepository: ...

    @property
    def requests(self) -> RequestLog: ...

    @property
    def shop_policies(self) -> ShopPolicies: ...

    @property
    def launches(self) -> RunLaunches: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, kind: object, error: object, tb: object) -> None:
        """Roll back what was not committed; turn a lost database into Unavailable."""
        ...

    async def commit(self) -> None:
        """Commit; raise DuplicateRequest if another call committed the same request key."""
        ...


@dataclass(frozen=True)
class AudienceSize:
    count: int
    exact: bool


class AudienceDirectory(Protocol):
    """The audience system, which owns and evaluates the rules."""

    async def estimate(
        self, shop_id: str, rule: Rule, as_of: datetime, time_zone: str
    ) -> AudienceSize: ...

    async def known(self, shop_id: str, member_ids: Sequence[str]) -> set[str]:
        """Which of these ids are members of the shop."""
        ...

    async def match_rules(
        self,
        shop_id: str,
        member_ids: Sequence[str],
        checks: Sequence[RuleCheck],
        as_of: datetime,
    ) -> dict[str, set[str]]:
        """Per member, the keys of the checks it matches, in one call for
        all; a member the shop does not have is left out."""
        ...


@dataclass(frozen=True)
class RuleCheck:
    key: str  # the caller's name for it, e.g. a plan id
    rule: Rule
    time_zone: str


@dataclass(frozen=True)
class Stock:
    template_id: str
    available: int
    unlimited: bool


@dataclass(frozen=True)
class TemplateInfo:
    """What publishing checks of a benefit template."""

    template_id: str
    kind: BenefitKind
    retired: bool


class BenefitCatalog(Protocol):
    """The benefit platform, as far as planning needs it."""

    async def inventory(self, shop_id: str, template_ids: Sequence[str]) -> list[Stock]: ...

    async def describe(self, shop_id: str, template_ids: Sequence[str]) -> dict[str, TemplateInfo]:
        """The templates of these ids the platform has (for the shop, or as
        presets); an id it does not know is left out."""
        ...

    async def recover_unused(self, shop_id: str, source: str, reason: str, limit: int) -> list[str]:
        """Take back (回收) the unused benefits granted under `source`, at most
        `limit`; the instances taken back now (idempotent: those taken back
        before are not listed again)."""
        ...


@dataclass(frozen=True)
class TemplateValue:
    """What one version of a benefit template gives."""

    template_id: str
    version: int
    kind: BenefitKind
    display_name: str
    amount: int  # points, or a coupon's face value in minor units
    basis_points: int  # discount or multiplier: 8500 = 85% price, 20000 = x2
    threshold_amount: int  # a coupon's minimum order amount in minor units
    description: str


class BenefitLedger(Protocol):
    """The benefit platform, as far as the shopper's side needs it. Each
    change carries an idempotency key the platform enforces; `timeout` is
    how long the caller can wait, in seconds (None: the default)."""

    async def mark_used(
        self, shop_id: str, instance_id: str, order_id: str, key: str, timeout: float | None
    ) -> None: ...

    async def replenish(
        self,
        shop_id: str,
        instance_id: str,
        order_id: str,
        key: str,
        reason: str,
        timeout: float | None,
    ) -> None: ...

    async def template(self, shop_id: str, template_id: str, version: int) -> TemplateValue:
        """One version of a template; version 0 is the latest."""
        ...


@dataclass(frozen=True)
class AudienceQuery:
    """One page of one shard of a rule's members, as of an instant."""

    shop_id: str
    rule: Rule | None  # None: the request carries none
    as_of: datetime
    time_zone: str
    shard_index: int
    shard_count: int
    page_size: int
    page_token: str = ""  # "": the shard's first page


@dataclass(frozen=True)
class AudiencePage:
    member_ids: tuple[str, ...]
    next_token: str  # "": the shard has no more pages


class AudiencePages(Protocol):
    """The audience system, as a run reads it. A failed call raises
    server.downstream.errors.CallFailed."""

    async def page(self, query: AudienceQuery) -> AudiencePage: ...

    async def unknown(self, shop_id: str, member_ids: Sequence[str]) -> list[str]:
        """Those of these ids the shop does not have, in the system's order."""
        ...

    async def opted_out(
        self, shop_id: str, member_ids: Sequence[str]
    ) -> dict[str, frozenset[MessageChannel]]:
        """The channels each member opted out of (members who opted out of
        none are left out)."""
        ...


@dataclass(frozen=True)
class Refusal:
    """An item of a batch the other system did not do, and whether a later
    try of it may succeed."""

    reason: str
    retryable: bool


@dataclass(frozen=True)
class Grant:
    """One benefit to grant; the platform grants each key once."""

    key: str
    member_id: str
    template_id: str
    quantity: int
    source: str
    valid_from: datetime | None = None  # effects: the window they hold for
    valid_until: datetime | None = None


@dataclass(frozen=True)
class GrantedBenefit:
    """An instance the benefit platform made for a grant."""

    instance_id: str
    shop_id: str
    member_id: str
    template_id: str
    template_version: int
    kind: BenefitKind
    display_name: str
    quantity: int
    valid_from: datetime | None
    valid_until: datetime | None
    grant_time: datetime


@dataclass(frozen=True)
class Granted:
    """What came of one grant: its instances (done now or before), or a refusal."""

    refusal: Refusal | None
    instances: tuple[GrantedBenefit, ...] = ()


@dataclass(frozen=True)
class Recover:
    """One instance to take back; the platform takes back each key once."""

    key: str
    instance_id: str
    reason: str


class BenefitGranter(Protocol):
    """The benefit platform, as a run grants and takes back. One answer per
    item, in order; a failed call raises server.downstream.errors.CallFailed."""

    async def grant(self, shop_id: str, grants: Sequence[Grant]) -> list[Granted]: ...

    async def recover(self, shop_id: str, items: Sequence[Recover]) -> list[Refusal | None]:
        """None for an instance taken back (now, or before under its key)."""
        ...


@dataclass(frozen=True)
class Message:
    """One message to one member; the channel sends each key once."""

    key: str
    member_id: str
    channel: MessageChannel
    template_id: str
    params: tuple[tuple[str, str], ...]
    source: str


@dataclass(frozen=True)
class Sent:
    """What came of one message: the channel's id of it, or a refusal."""

    refusal: Refusal | None
    message_id: str = ""


class MessageSender(Protocol):
    """The notification service. One answer per message, in order; a failed
    call raises server.downstream.errors.CallFailed."""

    async def send(self, shop_id: str, messages: Sequence[Message]) -> list[Sent]: ...
