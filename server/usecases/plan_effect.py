"""What a plan achieved: its groups' conversions and sales, and the uplift
with its 95% interval (docs/outcomes.md), from sums the database computes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta

from domain import effect
from domain.effect import Uplift
from domain.plan import Plan
from domain.ports import Clock, UnitOfWork
from domain.zones import zone
from server.persistence.effect_reads import HOLDOUT, TREATMENT, EffectReads, GroupSums
from server.usecases.plans import existing_plan


@dataclass(frozen=True)
class Sales:
    currency: str
    net_minor: int
    per_member_minor: float


@dataclass(frozen=True)
class Group:
    members: int
    converted: int
    orders: int
    sales: tuple[Sales, ...]

    @property
    def rate(self) -> float:
        return self.converted / self.members if self.members else 0.0


@dataclass(frozen=True)
class PlanEffect:
    plan: Plan
    treatment: Group
    holdout: Group
    conversion: Uplift | None
    sales_uplift: tuple[tuple[str, Uplift], ...]
    daily: tuple[tuple[str, int, int], ...]  # day, treatment's and holdout's converted


class PlanEffectUseCases:
    def __init__(
        self,
        uow: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
        reads: EffectReads,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._reads = reads
        self._clock = clock

    async def effect(self, shop_id: str, plan_id: str) -> PlanEffect:
        async with self._uow() as uow:
            plan = await existing_plan(uow, shop_id, plan_id)
        name = plan.spec.time_zone
        offset = self._clock.now().astimezone(zone(name)).utcoffset() or timedelta()
        sums = await self._reads.sums(
            shop_id, plan_id, plan.spec.measurement.attribution_window, offset, name
        )
        currencies = sorted({currency for _, currency in sums.sales})

        def group(g: int) -> Group:
            counted = sums.groups.get(g, GroupSums())
            sales = [(c, sums.sales[(g, c)]) for c in currencies if (g, c) in sums.sales]
            return Group(
                counted.members,
                counted.converted,
                sum(s.orders for _, s in sales),
                tuple(Sales(c, int(s.per_member.total), s.per_member.mean) for c, s in sales),
            )

        treatment, holdout = group(TREATMENT), group(HOLDOUT)
        uplifts = []
        for c in currencies:
            t, h = sums.sales.get((TREATMENT, c)), sums.sales.get((HOLDOUT, c))
            treated = t.per_member if t else effect.Sample(treatment.members, 0.0, 0.0)
            held = h.per_member if h else effect.Sample(holdout.members, 0.0, 0.0)
            if (found := effect.means(treated, held)) is not None:
                uplifts.append((c, found))
        days = sorted({day for _, day in sums.daily})
        return PlanEffect(
            plan,
            treatment,
            holdout,
            effect.proportions(
                treatment.converted, treatment.members, holdout.converted, holdout.members
            ),
            tuple(uplifts),
            tuple(
                (d, sums.daily.get((TREATMENT, d), 0), sums.daily.get((HOLDOUT, d), 0))
                for d in days
            ),
        )
