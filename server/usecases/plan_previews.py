"""Previewing a plan: its next fire times, the members its next runs would
meet, the stock its grants need, and the warnings these give rise to."""

from __future__ import annotations

import asyncio
from datetime import datetime

from domain import preview, runs
from domain.audience import listed_members
from domain.downstream_ports import AudienceDirectory, AudienceSize, BenefitCatalog
from domain.drafts import validate_spec
from domain.errors import FailedPrecondition, Unavailable, require
from domain.plan import Plan, PlanSpec
from domain.plan_calendar import TICK, PlanCalendar
from domain.ports import Clock

# The next runs whose audiences a preview counts, one audience call each.
RUN_ESTIMATES = 10


class PlanPreviews:
    """The base of PlanUseCases: previews, and the audience estimates that
    publishing asks for too."""

    _clock: Clock
    _audience: AudienceDirectory
    _benefits: BenefitCatalog | None

    async def preview(
        self, shop_id: str, plan: Plan | PlanSpec, parts: set[str], count: int
    ) -> preview.Preview:
        """The parts asked for ("audience", "fire_times", "inventory") and the
        warnings they give rise to."""
        spec = plan.spec if isinstance(plan, Plan) else plan
        require(validate_spec(spec))
        counted = parts & {"audience", "inventory"}
        fires = None
        if "fire_times" in parts or (counted and spec.time.execution):
            fires = tuple(self._fire_times(plan, count))
        audience = None
        estimates: tuple[preview.RunAudience, ...] = ()
        checks: tuple[preview.InventoryCheck, ...] = ()
        if counted:
            # Each of the next runs meets its own members (a birthday plan's
            # birthdays fall in each run's window): asked together.
            at = fires[:RUN_ESTIMATES] if fires else (self._clock.now(),)
            sizes = await asyncio.gather(*(self._estimate(shop_id, spec, t) for t in at))
            audience = sizes[0]
            if fires:
                estimates = tuple(preview.RunAudience(t, n) for t, n in zip(at, sizes, strict=True))
        unknown = None
        listed = listed_members(spec.audience) if counted and spec.audience else None
        if listed:
            known = await self._audience.known(shop_id, listed)
            unknown = preview.unknown_members(listed, known)
        if "inventory" in parts and audience is not None:
            if self._benefits is None:
                raise Unavailable("no benefit platform is configured", reason="NO_BENEFIT_PLATFORM")
            units = preview.units_per_member(spec)
            stock = await self._benefits.inventory(shop_id, sorted(units))
            checks = tuple(preview.inventory_checks(spec, audience, stock))
        return preview.Preview(
            audience=audience,
            fire_times=fires[:count] if fires and "fire_times" in parts else (),
            runs=estimates,
            unknown=unknown,
            inventory=checks,
            warnings=tuple(preview.warnings(spec, audience, fires, checks, unknown)),
        )

    def _fire_times(self, plan: Plan | PlanSpec, count: int) -> list[datetime]:
        """The next fire times of a plan, as if it were published now."""
        spec = plan.spec if isinstance(plan, Plan) else plan
        if not spec.time.execution:
            raise FailedPrecondition(
                "the plan has no execution time yet; set plan.time.execution",
                reason="EXECUTION_TIME_NOT_SET",
            )
        now = self._clock.now()
        anchor = plan.publish_time if isinstance(plan, Plan) and plan.publish_time else now
        # At or after now, as publishing asks: "immediately" fires at the publish instant.
        return PlanCalendar(spec.time, spec.time_zone, anchor).fires(now - TICK, count)

    async def _estimate(self, shop_id: str, spec: PlanSpec, at: datetime) -> AudienceSize:
        """The members a run at `at` would meet."""
        rule = runs.run_rule(spec)
        if spec.audience is None or rule is None:
            raise FailedPrecondition(
                "the plan has no audience rule yet; set plan.audience to estimate it",
                reason="AUDIENCE_NOT_SET",
            )
        return await self._audience.estimate(shop_id, rule, at, spec.time_zone)

    async def _next_run_audience(self, shop_id: str, spec: PlanSpec) -> AudienceSize:
        """The members the plan's next run would meet (now, if it never fires)."""
        now = self._clock.now()
        fires = PlanCalendar(spec.time, spec.time_zone, now).fires(now - TICK, 1)
        return await self._estimate(shop_id, spec, fires[0] if fires else now)
