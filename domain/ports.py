"""What the domain needs from outside, as protocols the server implements:
the clock and persistence here; the downstream systems (audience, benefit,
notification) are domain.downstream_ports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.plan import FrontOffice, Plan, PlanState
from domain.runs import Run
from domain.shop_policy import ShopPolicy
from domain.triggers import Wait


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


class TriggerWaits(Protocol):
    async def due(self, now: datetime, limit: int) -> list[Wait]:
        """Waiting waits due by `now`, earliest first, at most `limit`; held
        for this transaction (another replica's sweep passes them by)."""
        ...

    async def launched(self, waits: Sequence[Wait], run_id: str) -> None:
        """These waits are over: their members are in run `run_id`."""
        ...

    async def dropped(self, waits: Sequence[Wait], reason: str) -> None:
        """These waits are over without acting, for `reason`."""
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

    @property
    def waits(self) -> TriggerWaits: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, kind: object, error: object, tb: object) -> None:
        """Roll back what was not committed; turn a lost database into Unavailable."""
        ...

    async def commit(self) -> None:
        """Commit; raise DuplicateRequest if another call committed the same request key."""
        ...
