"""The shoppers' side: what front offices ask about one member of one shop
(what they report about the member's plan benefits is benefit_reports).

Every answer is about one member of the asking shop: a member the shop's
audience system does not know, or a benefit that is not this member's in
this shop, is NOT_FOUND, never an empty answer, so a front office learns
nothing about ids outside its shop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.applying import ApplyingPlan
from domain.audience import AllOf, Birthday, Rule
from domain.downstream_ports import AudienceDirectory, BenefitLedger, RuleCheck, TemplateValue
from domain.errors import NotFound
from domain.held_benefits import HeldBenefit
from domain.outcomes import held_out
from domain.plan import EFFECT_KINDS, BenefitKind, FrontOffice, GrantBenefits, Plan
from domain.plan_calendar import Effect
from domain.ports import Clock
from domain.records import MemberRecord
from server import call_context
from server.batching import Coalescer
from server.downstream.template_cache import TemplateValues
from server.persistence.active_plans import ActivePlans
from server.persistence.member_benefits import MemberBenefits
from server.persistence.member_records import RecordReader
from server.usecases.benefit_reports import BenefitReports
from server.usecases.plans import UnitOfWorkFactory

# What a store cannot use: shown on micro-mall pages only.
ONLINE_ONLY = (BenefitKind.FREE_SHIPPING.value, BenefitKind.PAID_CONTENT.value)
STORE_FRONT_OFFICES = (FrontOffice.RETAIL, FrontOffice.RETAIL_CHAIN)


@dataclass(frozen=True)
class _Ask:
    """One page's question, waiting in a batch."""

    member_id: str
    front_offices: tuple[FrontOffice, ...]
    # Benefit kinds the front office cannot use: none or ONLINE_ONLY, the
    # split the batch's read ranks benefits by.
    hidden: tuple[str, ...]
    record_limit: int
    benefit_limit: int
    # time.monotonic() at which the caller stops waiting; None = never.
    deadline: float | None


@dataclass(frozen=True)
class _Findings:
    """What a batch found for one page."""

    plans: list[ApplyingPlan]
    upcoming: list[ApplyingPlan]
    benefits: list[HeldBenefit]
    records: list[MemberRecord]
    as_of: datetime


@dataclass(frozen=True)
class MemberView:
    plans: list[ApplyingPlan]
    upcoming: list[ApplyingPlan]
    unused: list[HeldBenefit]
    records: list[MemberRecord]
    as_of: datetime


@dataclass(frozen=True)
class Checkout:
    plans: list[ApplyingPlan]
    usable: list[HeldBenefit]
    as_of: datetime


class ScenarioUseCases(BenefitReports):
    """The member pages and checkout; the benefit reports are the base's."""

    def __init__(
        self,
        records: RecordReader,
        benefits: MemberBenefits,
        active: ActivePlans,
        audience: AudienceDirectory,
        ledger: BenefitLedger,
        uow: UnitOfWorkFactory,
        clock: Clock,
        templates: TemplateValues | None = None,
        headlines: Mapping[str, str] | None = None,
    ) -> None:
        self._records = records
        self._benefits = benefits
        self._active = active
        self._audience = audience
        self._ledger = ledger
        self._uow = uow
        self._clock = clock
        self._templates = templates or TemplateValues(ledger)
        # Per product id: what a page leads its plans with (the catalog's).
        self._headlines = dict(headlines or {})
        # Pages of a shop asked at the same time go to the audience system
        # and the database together: one call and one read per batch, not
        # per page, so a busy process does less work per page.
        self.pages: Coalescer[str, _Ask, _Findings] = Coalescer(self._find_batch)
        self._answers: dict[
            tuple[str, int, datetime | None, datetime | None, tuple[str, ...]],
            tuple[ApplyingPlan, float],
        ] = {}
        self._monotonic = time.monotonic
        self._birthday_rules: dict[tuple[str, int], Rule] = {}

    async def view(
        self,
        shop_id: str,
        member_id: str,
        front_office: FrontOffice,
        record_limit: int,
        benefit_limit: int,
    ) -> MemberView:
        """The plans that apply to the member now on this front office's
        pages, the member's unused plan benefits (soonest expiry first) and
        their latest records."""
        hidden = () if front_office is FrontOffice.MICRO_MALL else ONLINE_ONLY
        ask = _Ask(
            member_id,
            (front_office,),
            hidden,
            record_limit,
            benefit_limit,
            call_context.deadline.get(),
        )
        page = await self.pages.load(shop_id, ask)
        return MemberView(page.plans, page.upcoming, page.benefits, page.records, page.as_of)

    async def checkout(self, shop_id: str, member_id: str, order_amount: int) -> Checkout:
        """For a member at a store now: the store plans that apply to them
        and their plan benefits usable on an order of this amount."""
        ask = _Ask(member_id, STORE_FRONT_OFFICES, ONLINE_ONLY, 0, 100, call_context.deadline.get())
        page = await self.pages.load(shop_id, ask)
        usable = []
        for h in page.benefits:
            value = await self._templates.get(shop_id, h.template_id, h.template_version)
            if order_amount >= value.threshold_amount:
                usable.append(h)
        return Checkout(page.plans, usable, page.as_of)

    async def _find_batch(self, shop_id: str, asks: list[_Ask]) -> list[_Findings | Exception]:
        """The pages of one shop asked at the same time: one audience call
        and one read for all, at one instant."""
        # Downstream calls wait as long as the most patient caller.
        deadlines = [a.deadline for a in asks if a.deadline is not None]
        call_context.deadline.set(max(deadlines) if len(deadlines) == len(asks) else None)
        now = self._clock.now()
        offices = {office for ask in asks for office in ask.front_offices}
        members = list(dict.fromkeys(a.member_id for a in asks))
        benefit_limit = max(a.benefit_limit for a in asks)
        record_limit = max(a.record_limit for a in asks)
        matched, (usable, records) = await asyncio.gather(
            self._applying(shop_id, members, offices, now),
            self._benefits.pages(shop_id, members, now, benefit_limit, ONLINE_ONLY, record_limit),
        )
        out: list[_Findings | Exception] = []
        for ask in asks:
            applying = matched.get(ask.member_id)
            if applying is None:
                out.append(_no_member(shop_id, ask.member_id))
                continue
            plans: list[ApplyingPlan] = []
            upcoming: list[ApplyingPlan] = []
            for plan, when in applying:
                if plan.spec.front_office not in ask.front_offices:
                    continue
                shown = await self._answer(plan, when, ask.hidden)
                (plans if when.applies else upcoming).append(shown)
            upcoming.sort(key=lambda p: (p.window_start, p.plan.plan_id))
            held = usable.get(ask.member_id, [])
            if ask.hidden:
                held = [h for h in held if h.kind not in ask.hidden]
            out.append(
                _Findings(
                    plans,
                    upcoming,
                    held[: ask.benefit_limit],
                    records.get(ask.member_id, [])[: ask.record_limit],
                    now,
                )
            )
        return out

    async def records(
        self,
        shop_id: str,
        member_id: str,
        kinds: Sequence[str],
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[MemberRecord]:
        """A member's timeline, newest first."""
        await self._member(shop_id, member_id)
        return await self._records.page(shop_id, member_id, kinds, before, limit)

    async def benefits(
        self,
        shop_id: str,
        member_id: str,
        status: str,
        plan_id: str,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> tuple[list[HeldBenefit], datetime]:
        """A member's plan benefits, newest grant first, and the instant
        their status (expired or not) was decided at."""
        await self._member(shop_id, member_id)
        now = self._clock.now()
        return await self._benefits.page(
            shop_id, member_id, status, plan_id, before, limit, now
        ), now

    async def _applying(
        self,
        shop_id: str,
        member_ids: Sequence[str],
        front_offices: Collection[FrontOffice],
        now: datetime,
    ) -> dict[str, list[tuple[Plan, Effect]]]:
        """Per member of the shop, the plans for these front offices whose
        effects hold now or come next by their calendar, and whose audience
        (with, for a birthday plan, the member's birthday period) takes the
        member, by one call to the audience system for all the members. A
        stranger to the shop is left out, and so is a member from the plans
        whose control group holds him (he gets nothing from them)."""
        timely = [
            (plan, effect)
            for plan, effect in await self._active.timely(shop_id, now)
            if plan.spec.front_office in front_offices and _shown(effect)
        ]
        checks = [
            RuleCheck(plan.plan_id, rule, plan.spec.time_zone)
            for plan, effect in timely
            if (rule := self._member_rule(plan, effect)) is not None
        ]
        matched = await self._audience.match_rules(shop_id, member_ids, checks, now)
        checked = {c.key for c in checks}
        return {
            member_id: [
                (plan, effect)
                for plan, effect in timely
                if (plan.plan_id not in checked or plan.plan_id in keys)
                and not held_out(plan.plan_id, member_id, plan.spec.measurement.holdout_percent)
            ]
            for member_id, keys in matched.items()
        }

    def _member_rule(self, plan: Plan, effect: Effect) -> Rule | None:
        """Who the plan's effects are for now: its audience, and for a
        birthday plan, members whose birthday period holds the instant —
        one object per plan revision, so the audience adapter keeps the
        checks it built (it knows rules by identity)."""
        rule = plan.spec.audience
        if effect.birthday is None:
            return rule
        key = (plan.plan_id, plan.revision)
        kept = self._birthday_rules.get(key)
        if kept is None:
            if len(self._birthday_rules) >= 10_000:
                self._birthday_rules.clear()
            born = Birthday(effect.birthday)
            kept = self._birthday_rules[key] = born if rule is None else AllOf((rule, born))
        return kept

    async def _answer(self, plan: Plan, when: Effect, hidden: tuple[str, ...]) -> ApplyingPlan:
        """What a page shows of a plan: the same object for every page until
        the plan, its window or the shaping changes, or a second passes (its
        effects' template values may change)."""
        window = when.window
        start, end = (window.start, window.end) if window is not None else (None, None)
        key = (plan.plan_id, plan.revision, start, end, hidden)
        kept = self._answers.get(key)
        at = self._monotonic()
        if kept is not None and kept[1] > at:
            return kept[0]
        if len(self._answers) >= 10_000:
            self._answers.clear()
        effects = await self._effects(plan, hidden)
        answer = ApplyingPlan(plan, start, end, effects, self._headline(plan))
        self._answers[key] = (answer, at + 1.0)
        return answer

    async def _effects(self, plan: Plan, hidden: Sequence[str]) -> tuple[TemplateValue, ...]:
        out = []
        for action in plan.spec.actions:
            if not isinstance(action, GrantBenefits):
                continue
            for grant in action.benefits:
                if grant.kind in EFFECT_KINDS and grant.kind.value not in hidden:
                    out.append(await self._templates.get(plan.shop_id, grant.template_id))
        return tuple(out)

    async def _member(self, shop_id: str, member_id: str) -> None:
        if member_id not in await self._audience.known(shop_id, [member_id]):
            raise _no_member(shop_id, member_id)

    def _headline(self, plan: Plan) -> str:
        """One line for the page: the product's lead-in, then the plan's name —
        unless the name already leads with it ("Member day: double points")."""
        lead = self._headlines.get(plan.spec.product_id, "")
        name = plan.spec.display_name
        if not lead or name.casefold().startswith(lead.casefold()):
            return name
        return f"{lead}: {name}"


def _shown(effect: Effect) -> bool:
    """A plan a page shows: its effects hold now, or come next (a birthday
    plan's next window is the member's own, shown when it opens)."""
    if effect.applies:
        return True
    return effect.window is not None and effect.birthday is None


def _no_member(shop_id: str, member_id: str) -> NotFound:
    return NotFound(f"no member {member_id!r} in shop {shop_id!r}", reason="MEMBER_NOT_FOUND")
