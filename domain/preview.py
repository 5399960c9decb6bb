"""What a merchant sees before publishing: inventory checks and warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.downstream_ports import AudienceSize, Stock
from domain.plan import GrantBenefits, PlanSpec


@dataclass(frozen=True)
class InventoryCheck:
    template_id: str
    required: int
    available: int
    unlimited: bool

    @property
    def sufficient(self) -> bool:
        return self.unlimited or self.available >= self.required


@dataclass(frozen=True)
class Warning:
    field: str
    reason: str
    message: str


@dataclass(frozen=True)
class RunAudience:
    """The members one of the next runs would meet."""

    fire_time: datetime
    size: AudienceSize


@dataclass(frozen=True)
class UnknownMembers:
    """Listed members (a precise audience) the audience system does not know."""

    count: int
    first: tuple[str, ...]  # at most SHOWN_UNKNOWN, in the list's order


SHOWN_UNKNOWN = 10


def unknown_members(listed: tuple[str, ...], known: set[str]) -> UnknownMembers | None:
    unknown = [m for m in dict.fromkeys(listed) if m not in known]
    if not unknown:
        return None
    return UnknownMembers(len(unknown), tuple(unknown[:SHOWN_UNKNOWN]))


@dataclass(frozen=True)
class Preview:
    # The next run's audience (the audience now, for a plan that does not fire).
    audience: AudienceSize | None = None
    fire_times: tuple[datetime, ...] = ()
    runs: tuple[RunAudience, ...] = ()
    unknown: UnknownMembers | None = None
    inventory: tuple[InventoryCheck, ...] = ()
    warnings: tuple[Warning, ...] = field(default_factory=tuple)


def units_per_member(spec: PlanSpec) -> dict[str, int]:
    """Benefit units one member gets per run, by template."""
    units: dict[str, int] = {}
    for action in spec.actions:
        if isinstance(action, GrantBenefits):
            for grant in action.benefits:
                units[grant.template_id] = units.get(grant.template_id, 0) + grant.quantity
    return units


def inventory_checks(
    spec: PlanSpec, audience: AudienceSize, stock: list[Stock]
) -> list[InventoryCheck]:
    units = units_per_member(spec)
    return [
        InventoryCheck(
            s.template_id, audience.count * units.get(s.template_id, 0), s.available, s.unlimited
        )
        for s in stock
    ]


def warnings(
    spec: PlanSpec,
    audience: AudienceSize | None,
    fires: tuple[datetime, ...] | None,
    checks: tuple[InventoryCheck, ...],
    unknown: UnknownMembers | None = None,
) -> list[Warning]:
    """Things a merchant should know; none of them stops a publish."""
    out: list[Warning] = []
    if unknown is not None:
        more = ", ..." if unknown.count > len(unknown.first) else ""
        out.append(
            Warning(
                "plan.audience.members",
                "UNKNOWN_MEMBERS",
                f"{unknown.count} listed members are unknown to the audience system and will "
                f"be skipped: {', '.join(unknown.first)}{more}",
            )
        )
    if audience is not None and audience.count == 0:
        out.append(
            Warning("plan.audience", "AUDIENCE_EMPTY", "no member is in the next run's audience")
        )
    if fires is not None and not fires:
        out.append(
            Warning(
                "plan.time.execution", "NO_FIRE_TIMES", "the plan will not fire within its term"
            )
        )
    budget = spec.limits.total_budget
    per_run = sum(units_per_member(spec).values())
    if audience is not None and budget > 0 and audience.count * per_run > budget:
        share = 100 * budget // max(audience.count * per_run, 1)
        out.append(
            Warning(
                "plan.limits.total_budget",
                "BUDGET_BELOW_AUDIENCE",
                f"the budget of {budget} units covers {share}% of one run for "
                f"{audience.count} members",
            )
        )
    for i, check in enumerate(checks):
        if not check.sufficient:
            out.append(
                Warning(
                    f"inventory_checks[{i}]",
                    "INVENTORY_SHORT",
                    f"{check.template_id}: {check.available} left, one run needs {check.required}",
                )
            )
    return out
