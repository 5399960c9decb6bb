"""Plan use cases: create, read, list, update, delete, publish, approve, end
(preview is plan_previews)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from domain import lifecycle, runs
from domain.downstream_ports import AudienceDirectory, BenefitCatalog
from domain.drafts import apply_mask, new_plan
from domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    NotFound,
    Unavailable,
    require,
)
from domain.mask_paths import JSON_NOTE, json_path, json_paths
from domain.plan import (
    FrontOffice,
    Plan,
    PlanSpec,
    PlanState,
)
from domain.ports import Clock, PlanCursor, PlanFilter, RequestKey, UnitOfWork
from domain.products import ProductTemplate, variation_violations
from server.usecases.once import once, outcome_to_dict
from server.usecases.plan_previews import PlanPreviews

UnitOfWorkFactory = Callable[[], UnitOfWork]
# Benefits taken back within an EndPlan call; for more, or for one run's
# grants, RecoverPlanRun starts a throttled recovery run.
RECOVER_IN_CALL = 10_000
# An EndPlan outcome's count of benefits taken back, kept beside its plan.
RECOVERED = "recovered"


T = TypeVar("T")


@dataclass(frozen=True)
class PlanPage:
    plans: Sequence[Plan]
    next_cursor: PlanCursor | None


class PlanUseCases(PlanPreviews):
    """Plans: made, read, changed, published, ended; previews are the base's."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        audience: AudienceDirectory,
        catalog: dict[str, ProductTemplate] | None = None,
        benefits: BenefitCatalog | None = None,
        taken_back: Callable[[str, list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._uow = uow
        # Told the instances an end took back (the members' benefits, records).
        self._taken_back = taken_back
        self._clock = clock
        self._audience = audience
        self._catalog = catalog or {}
        self._benefits = benefits

    def templates(self, product: str, office: FrontOffice | None) -> list[ProductTemplate]:
        """The catalog's templates, of one product ("" for any) and front office."""
        return [
            t
            for _, t in sorted(self._catalog.items())
            if (not product or t.preset.product_id == product)
            and (office is None or office in t.front_offices)
        ]

    def _check_product(self, spec: PlanSpec, path: str = "plan") -> None:
        """A plan's product is one the catalog has (a template file made it)."""
        known = sorted({t.preset.product_id for t in self._catalog.values()})
        if spec.product_id and known and spec.product_id not in known:
            require(
                [
                    FieldViolation(
                        f"{path}.product_id",
                        f"unknown product {spec.product_id!r}; the catalog has: "
                        + ", ".join(known),
                    )
                ]
            )

    def template(self, template_id: str) -> ProductTemplate:
        found = self._catalog.get(template_id)
        if found is None:
            raise NotFound(f"no plan template {template_id!r}", reason="TEMPLATE_NOT_FOUND")
        return found

    async def create_from_template(
        self,
        shop_id: str,
        template_id: str,
        overrides: PlanSpec,
        paths: list[str],
        actor: str,
        key: RequestKey | None,
    ) -> Plan:
        async def change(uow: UnitOfWork) -> Plan:
            # Checked under the request log: a request id names one request,
            # whatever is wrong with another one sent under it.
            template = self.template(template_id)
            spec = _override(template, template.preset, overrides, paths, "override_mask")
            plan = new_plan(shop_id, _new_id(), spec, actor, self._clock.now(), template_id)
            await uow.plans.add(plan)
            return plan

        return await self._once(shop_id, key, change)

    async def create(
        self, shop_id: str, spec: PlanSpec, actor: str, key: RequestKey | None
    ) -> Plan:
        async def change(uow: UnitOfWork) -> Plan:
            self._check_product(spec)
            plan = new_plan(shop_id, _new_id(), spec, actor, self._clock.now())
            await uow.plans.add(plan)
            return plan

        return await self._once(shop_id, key, change)

    async def get(self, shop_id: str, plan_id: str) -> Plan:
        async with self._uow() as uow:
            return await existing_plan(uow, shop_id, plan_id)

    async def list_page(
        self, shop_id: str, filter: PlanFilter, after: PlanCursor | None, page_size: int
    ) -> PlanPage:
        async with self._uow() as uow:
            found = await uow.plans.list(shop_id, filter, after, page_size + 1)
        page = found[:page_size]
        more = len(found) > page_size
        cursor = PlanCursor(page[-1].create_time, page[-1].plan_id) if more else None
        return PlanPage(page, cursor)

    async def update(
        self,
        shop_id: str,
        plan_id: str,
        etag: str,
        changes: PlanSpec,
        paths: list[str],
        actor: str,
        key: RequestKey | None,
    ) -> Plan:
        async def change(uow: UnitOfWork) -> Plan:
            plan = await existing_plan(uow, shop_id, plan_id)
            plan.check_etag(etag)
            if plan.template_id:
                spec = _override(
                    self.template(plan.template_id), plan.spec, changes, paths, "update_mask"
                )
            else:
                spec = apply_mask(plan.spec, changes, paths)
            self._check_product(spec)
            lifecycle.check_safe_change(plan, spec, paths)
            updated = plan.updated(spec, actor, self._clock.now())
            await uow.plans.save(updated, before=plan)
            return updated

        return await self._once(shop_id, key, change)

    async def delete(self, shop_id: str, plan_id: str, etag: str, key: RequestKey | None) -> None:
        async def change(uow: UnitOfWork) -> None:
            plan = await existing_plan(uow, shop_id, plan_id)
            plan.check_etag(etag)
            plan.check_deletable()
            await uow.plans.delete(plan)

        await self._once(shop_id, key, change)

    async def transition(
        self,
        shop_id: str,
        plan_id: str,
        etag: str,
        action: Callable[[Plan, str, datetime], Plan],
        actor: str,
        key: RequestKey | None,
    ) -> Plan:
        """Publish, pause, resume or end: one lifecycle step, etag-checked."""

        async def change(uow: UnitOfWork) -> Plan:
            plan = await existing_plan(uow, shop_id, plan_id)
            plan.check_etag(etag)
            moved = action(plan, actor, self._clock.now())
            await uow.plans.save(moved, before=plan)
            return moved

        return await self._once(shop_id, key, change)

    async def publish(
        self, shop_id: str, plan_id: str, etag: str, actor: str, key: RequestKey | None
    ) -> Plan:
        """Publish a draft whose grants the benefit platform can give (asked
        before the change, outside its transaction): a template that does
        not exist, is retired or is of another kind is FAILED_PRECONDITION
        with a violation per grant; the platform unreachable is UNAVAILABLE
        with a retry hint. Either way nothing changes. A draft whose next run
        would reach more members than the shop's approval threshold waits
        for an approver instead (AWAITING_APPROVAL)."""
        checked = None
        waits: tuple[int, int] | None = None  # (audience, threshold) when it must wait
        if key is None or not await self._answered(shop_id, key):
            async with self._uow() as uow:
                draft = await existing_plan(uow, shop_id, plan_id)
                policy = await uow.shop_policies.get(shop_id)
            if draft.state is PlanState.DRAFT:
                await self._check_benefits(shop_id, draft)
                checked = draft.spec.actions
                if policy.approval_threshold and draft.spec.audience is not None:
                    audience = (await self._next_run_audience(shop_id, draft.spec)).count
                    if policy.needs_approval(audience):
                        waits = (audience, policy.approval_threshold)

        def publish_checked(plan: Plan, by: str, now: datetime) -> Plan:
            if checked is not None and plan.spec.actions != checked:
                raise Aborted(
                    f"plan {plan_id}'s actions changed while they were checked; retry",
                    reason="ETAG_MISMATCH",
                )
            if waits is not None:
                return lifecycle.request_approval(plan, by, now, *waits)
            return lifecycle.publish(plan, by, now)

        return await self.transition(shop_id, plan_id, etag, publish_checked, actor, key)

    async def approve(
        self, shop_id: str, plan_id: str, etag: str, actor: str, key: RequestKey | None
    ) -> Plan:
        """An approver publishes a plan awaiting approval (its grants asked
        about again: a template may have been retired meanwhile)."""
        if key is None or not await self._answered(shop_id, key):
            async with self._uow() as uow:
                waiting = await existing_plan(uow, shop_id, plan_id)
            if waiting.state is PlanState.AWAITING_APPROVAL:
                await self._check_benefits(shop_id, waiting)
        return await self.transition(shop_id, plan_id, etag, lifecycle.approve, actor, key)

    async def reject(
        self,
        shop_id: str,
        plan_id: str,
        etag: str,
        reason: str,
        actor: str,
        key: RequestKey | None,
    ) -> Plan:
        def rejected(plan: Plan, by: str, now: datetime) -> Plan:
            return lifecycle.reject(plan, by, now, reason)

        return await self.transition(shop_id, plan_id, etag, rejected, actor, key)

    async def _check_benefits(self, shop_id: str, plan: Plan) -> None:
        templates = lifecycle.granted_templates(plan.spec)
        if not templates or self._benefits is None:
            return
        known = await self._benefits.describe(shop_id, templates)
        problems = lifecycle.benefit_violations(plan.spec, known)
        if problems:
            raise FailedPrecondition(
                f"plan {plan.plan_id} grants what the benefit platform cannot give: "
                + "; ".join(f"{v.field} {v.description}" for v in problems),
                reason="BENEFIT_TEMPLATE_UNUSABLE",
                violations=problems,
            )

    async def _answered(self, shop_id: str, key: RequestKey) -> bool:
        """Whether a call with this request id has been answered (a retry)."""
        async with self._uow() as uow:
            return await uow.requests.find(shop_id, key) is not None

    async def end(
        self,
        shop_id: str,
        plan_id: str,
        etag: str,
        actor: str,
        key: RequestKey | None,
        recover: bool,
        reason: str,
        stop_runs: Callable[[Plan], Awaitable[None]] | None = None,
    ) -> tuple[Plan, int]:
        """End a plan and, when asked, take back the unused benefits it granted
        — after `stop_runs` has cancelled its runs, so no new batch grants
        behind the take-back."""
        plan = await self.transition(shop_id, plan_id, etag, lifecycle.end, actor, key)
        if key is not None:
            async with self._uow() as uow:
                first = await uow.requests.find(shop_id, key)
            if first is not None and RECOVERED in first:
                return plan, int(first[RECOVERED])  # a retry: the first answer, whole
        if stop_runs is not None:
            await stop_runs(plan)
        recovered = 0
        if recover:
            if self._benefits is None:
                raise Unavailable("no benefit platform is configured", reason="NO_BENEFIT_PLATFORM")
            taken = await self._benefits.recover_unused(
                shop_id, runs.grant_source(plan_id), reason or "plan ended", RECOVER_IN_CALL
            )
            if self._taken_back is not None:
                await self._taken_back(shop_id, taken)
            recovered = len(taken)
        if key is not None:
            # The answer is kept once the take-back is done: a retry after a
            # crash before this point takes back again (idempotent by key).
            async with self._uow() as uow:
                outcome = outcome_to_dict(plan) | {RECOVERED: recovered}
                await uow.requests.complete(shop_id, key, outcome)
                await uow.commit()
        return plan, recovered

    async def _once(
        self, shop_id: str, key: RequestKey | None, change: Callable[[UnitOfWork], Awaitable[T]]
    ) -> T:
        return await once(self._uow, shop_id, key, change)


def _override(
    template: ProductTemplate, spec: PlanSpec, changes: PlanSpec, paths: list[str], mask: str
) -> PlanSpec:
    """`spec` with the masked fields from `changes`, within what the product allows."""
    locked = [
        FieldViolation(
            f"{mask}.paths[{i}]",
            f"template {template.template_id} does not let '{json_path(path)}' change; "
            f"editable ({JSON_NOTE}): {json_paths(template.editable_fields)}",
        )
        for i, path in enumerate(paths)
        if path not in template.editable_fields
        and not any(path.startswith(f"{e}.") for e in template.editable_fields)
    ]
    require(locked)
    updated = apply_mask(spec, changes, paths) if paths else spec
    require(variation_violations(template, updated))
    return updated


async def existing_plan(uow: UnitOfWork, shop_id: str, plan_id: str) -> Plan:
    """The plan of this shop, or NOT_FOUND (another shop's plan is not found)."""
    if not plan_id:
        require([FieldViolation("plan_id", "required")])
    plan = await uow.plans.get(shop_id, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} not found in shop {shop_id}", reason="PLAN_NOT_FOUND")
    return plan


def _new_id() -> str:
    return uuid.uuid4().hex
