"""What the domain needs from the downstream systems -- the audience system,
the benefit platform and the notification system -- as protocols the
server's adapters implement (server/downstream/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from domain.audience import Rule
from domain.plan import BenefitKind, MessageChannel


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

    async def matching(
        self, shop_id: str, member_ids: Sequence[str], rule: Rule, as_of: datetime, time_zone: str
    ) -> set[str]:
        """Those of these members the rule takes at `as_of` (strangers to
        the shop are not among them)."""
        ...


@dataclass(frozen=True)
class Refusal:
    """An item of a batch the other system did not do, and whether a later
    try of it may succeed."""

    reason: str
    retryable: bool


class Grant(NamedTuple):
    """One benefit to grant; the platform grants each key once."""

    key: str
    member_id: str
    template_id: str
    quantity: int
    source: str
    valid_from: datetime | None = None  # effects: the window they hold for
    valid_until: datetime | None = None


class GrantedBenefit(NamedTuple):
    """An instance the benefit platform made for a grant (a tuple: a run
    makes one per member, and a tuple is made several times faster)."""

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


class Granted(NamedTuple):
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
