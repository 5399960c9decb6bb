"""custops.plan.v1.OperationPlanService: plans for merchants' admins.

RPCs not built yet fall through to the generated base class, which the call
interceptor answers with UNIMPLEMENTED.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc

from custops.plan.v1 import plan_pb2 as pb
from custops.plan.v1 import plan_pb2_grpc
from domain import lifecycle
from domain.errors import FieldViolation, InvalidArgument, Unimplemented, require
from domain.plan import MAX_NAME_LENGTH, PRODUCT_ID, Plan, PlanSpec
from domain.ports import Clock, PlanCursor, PlanFilter
from domain.products import ProductTemplate
from domain.runs import MAX_TEST_MEMBERS
from domain.zones import DEFAULT_TIME_ZONE, is_time_zone
from server import call_context
from server.downstream.wire import timestamp
from server.mapping.plan import (
    BUSINESS_PRODUCTS,
    DOWNSTREAM_NAMES,
    FRONT_OFFICES,
    PLAN_STATES,
    business_product_to_proto,
    front_office_to_proto,
    in_term_years,
    plan_to_proto,
    renamed,
    spec_from_proto,
    spec_to_proto,
)
from server.mapping.runs import RUN_STATES, run_to_proto, totals_to_proto
from server.servicers.approvals import ApprovalCalls
from server.servicers.requests import (
    PLAN_ID,
    decode_page_token,
    effective_page_size,
    encode_page_token,
    page_size_violations,
    plan_id_violations,
    request_key,
    shop_id_violations,
    time_id_reader,
    time_id_token,
)
from server.servicers.shop_policy import ShopPolicyCalls
from server.usecases.plans import PlanUseCases
from server.usecases.runs import RunUseCases
from server.usecases.shop_policy import ShopPolicyUseCases
from server.usecases.terms import explain
from server.usecases.throttle import Throttle, ThrottleUseCases

Context: TypeAlias = grpc.aio.ServicerContext


class OperationPlanService(
    ShopPolicyCalls, ApprovalCalls, plan_pb2_grpc.OperationPlanServiceServicer
):
    def __init__(
        self,
        plans: PlanUseCases,
        clock: Clock,
        throttle: ThrottleUseCases,
        policies: ShopPolicyUseCases,
        runs: RunUseCases | None = None,
    ) -> None:
        self._plans = plans
        self._clock = clock
        self._throttle = throttle
        self._policies = policies
        self._runs = runs

    def _run_cases(self) -> RunUseCases:
        if self._runs is None:
            raise Unimplemented("runs need the task engine, which this server does not run")
        return self._runs

    async def ListPlanRuns(
        self, request: pb.ListPlanRunsRequest, context: Context
    ) -> pb.ListPlanRunsResponse:
        violations = (
            shop_id_violations(request.shop_id)
            + plan_id_violations(request.plan_id)
            + page_size_violations(request.page_size)
        )
        state = ""
        if request.state:
            state = next((k for k, v in RUN_STATES.items() if v == request.state), "")
            if not state:
                violations.append(FieldViolation("state", f"unknown run state {request.state}"))
        require(violations)
        scope = f"runs|{request.shop_id}|{request.plan_id}|{state}"
        after = decode_page_token(request.page_token, scope, _run_cursor)
        size = effective_page_size(request.page_size)
        views = await self._run_cases().page(
            request.shop_id, request.plan_id, state, after, size + 1
        )
        token = ""
        if len(views) > size:
            last = views[size - 1].run
            token = time_id_token(last.create_time, last.run_id, scope)
        return pb.ListPlanRunsResponse(
            runs=[run_to_proto(v) for v in views[:size]], next_page_token=token
        )

    async def GetPlanRun(
        self, request: pb.GetPlanRunRequest, context: Context
    ) -> pb.GetPlanRunResponse:
        require(_run_violations(request))
        view = await self._run_cases().get(request.shop_id, request.plan_id, request.run_id)
        return pb.GetPlanRunResponse(run=run_to_proto(view))

    async def TriggerPlanRun(
        self, request: pb.TriggerPlanRunRequest, context: Context
    ) -> pb.TriggerPlanRunResponse:
        violations = shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id)
        if len(request.request_id) > 128:
            violations.append(FieldViolation("request_id", "at most 128 characters"))
        testers = list(request.test_member_ids)
        if len(testers) > MAX_TEST_MEMBERS or any(not m.strip() or len(m) > 64 for m in testers):
            violations.append(
                FieldViolation(
                    "test_member_ids", f"1-{MAX_TEST_MEMBERS} member ids of 1-64 characters"
                )
            )
        require(violations)
        runs = self._run_cases()
        if testers:
            view = await runs.test(request.shop_id, request.plan_id, request.request_id, testers)
        else:
            view = await runs.trigger(request.shop_id, request.plan_id, request.request_id)
        return pb.TriggerPlanRunResponse(run=run_to_proto(view))

    async def RecoverPlanRun(
        self, request: pb.RecoverPlanRunRequest, context: Context
    ) -> pb.RecoverPlanRunResponse:
        violations = _run_violations(request)
        if len(request.request_id) > 128:
            violations.append(FieldViolation("request_id", "at most 128 characters"))
        if len(request.reason) > 200:
            violations.append(FieldViolation("reason", "at most 200 characters"))
        require(violations)
        view = await self._run_cases().recover(
            request.shop_id, request.plan_id, request.run_id, request.request_id, request.reason
        )
        return pb.RecoverPlanRunResponse(run=run_to_proto(view))

    async def CancelPlanRun(
        self, request: pb.CancelPlanRunRequest, context: Context
    ) -> pb.CancelPlanRunResponse:
        require(_run_violations(request))
        view = await self._run_cases().cancel(request.shop_id, request.plan_id, request.run_id)
        return pb.CancelPlanRunResponse(run=run_to_proto(view))

    async def RetryFailedItems(
        self, request: pb.RetryFailedItemsRequest, context: Context
    ) -> pb.RetryFailedItemsResponse:
        require(_run_violations(request))
        view, count = await self._run_cases().retry_failed(
            request.shop_id,
            request.plan_id,
            request.run_id,
            request_key("RetryFailedItems", request),
        )
        return pb.RetryFailedItemsResponse(run=run_to_proto(view), retried_count=count)

    async def GetPlanStatistics(
        self, request: pb.GetPlanStatisticsRequest, context: Context
    ) -> pb.GetPlanStatisticsResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        totals = await self._run_cases().totals(request.shop_id, request.plan_id)
        return pb.GetPlanStatisticsResponse(statistics=totals_to_proto(request.plan_id, totals))

    async def GetThrottleSettings(
        self, request: pb.GetThrottleSettingsRequest, context: Context
    ) -> pb.GetThrottleSettingsResponse:
        if request.shop_id:
            require(shop_id_violations(request.shop_id))
        # The platform-wide buckets are for callers of every shop (or when
        # nobody is asked for credentials).
        caller = call_context.caller.get()
        found = await self._throttle.get(
            request.shop_id, with_platform=caller is None or caller.every_shop
        )
        return pb.GetThrottleSettingsResponse(settings=[_throttle_to_proto(t) for t in found])

    async def UpdateThrottleSetting(
        self, request: pb.UpdateThrottleSettingRequest, context: Context
    ) -> pb.UpdateThrottleSettingResponse:
        new = request.setting
        violations = shop_id_violations(new.shop_id) if new.shop_id else []
        paths = list(request.update_mask.paths) or ["rate_per_second", "burst"]
        violations += [
            FieldViolation(f"update_mask.paths[{i}]", "rate_per_second or burst")
            for i, p in enumerate(paths)
            if p not in ("rate_per_second", "burst")
        ]
        require(violations)
        changed = await self._throttle.update(
            DOWNSTREAM_NAMES.get(new.downstream, ""),
            new.shop_id,
            new.rate_per_second if "rate_per_second" in paths else None,
            int(new.burst) if "burst" in paths else None,
            new.etag,
            request_key("UpdateThrottleSetting", request),
        )
        return pb.UpdateThrottleSettingResponse(setting=_throttle_to_proto(changed))

    async def CreatePlan(
        self, request: pb.CreatePlanRequest, context: Context
    ) -> pb.CreatePlanResponse:
        violations = shop_id_violations(request.shop_id)
        spec = None
        if request.HasField("plan"):
            spec = _spec_or_violations(request.plan, violations)
        else:
            violations.append(FieldViolation("plan", "required"))
        require(violations)
        assert spec is not None
        plan = await self._plans.create(
            request.shop_id, spec, call_context.actor.get(), request_key("CreatePlan", request)
        )
        return pb.CreatePlanResponse(plan=plan_to_proto(plan))

    async def GetPlan(self, request: pb.GetPlanRequest, context: Context) -> pb.GetPlanResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        plan = await self._plans.get(request.shop_id, request.plan_id)
        return pb.GetPlanResponse(plan=plan_to_proto(plan))

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: Context
    ) -> pb.ListPlansResponse:
        violations = shop_id_violations(request.shop_id) + page_size_violations(request.page_size)
        state = None
        if request.state:
            state = PLAN_STATES.get(request.state)
            if state is None:
                violations.append(FieldViolation("state", f"unknown plan state {request.state}"))
        product = _product_filter(request, violations)
        front_office = None
        if request.front_office:
            front_office = FRONT_OFFICES.get(request.front_office)
            if front_office is None:
                violations.append(
                    FieldViolation("front_office", f"unknown value {request.front_office}")
                )
        if len(request.display_name_contains) > MAX_NAME_LENGTH:
            violations.append(
                FieldViolation("display_name_contains", f"at most {MAX_NAME_LENGTH} characters")
            )
        require(violations)
        scope = "|".join(
            str(part)
            for part in (
                "plans",
                request.shop_id,
                request.state,
                product,
                request.front_office,
                request.display_name_contains,
            )
        )
        after = decode_page_token(request.page_token, scope, _plan_cursor)
        page = await self._plans.list_page(
            request.shop_id,
            PlanFilter(
                state=state,
                product_id=product,
                front_office=front_office,
                name_contains=request.display_name_contains,
            ),
            after,
            effective_page_size(request.page_size),
        )
        token = ""
        if page.next_cursor is not None:
            cursor = page.next_cursor
            token = time_id_token(cursor.create_time, cursor.plan_id, scope)
        return pb.ListPlansResponse(
            plans=[plan_to_proto(p) for p in page.plans], next_page_token=token
        )

    async def UpdatePlan(
        self, request: pb.UpdatePlanRequest, context: Context
    ) -> pb.UpdatePlanResponse:
        violations = shop_id_violations(request.shop_id)
        if not request.HasField("plan"):
            violations.append(FieldViolation("plan", "required"))
        else:
            violations += plan_id_violations(request.plan.plan_id, "plan.plan_id")
        if not request.update_mask.paths:
            violations.append(
                FieldViolation(
                    "update_mask", "required: name the fields to change, e.g. display_name"
                )
            )
        require(violations)
        paths = renamed(request.update_mask.paths)
        changes = _changes(request.plan)
        plan = await self._plans.update(
            request.shop_id,
            request.plan.plan_id,
            request.plan.etag,
            changes,
            paths,
            call_context.actor.get(),
            request_key("UpdatePlan", request),
        )
        return pb.UpdatePlanResponse(plan=plan_to_proto(plan))

    async def DeletePlan(
        self, request: pb.DeletePlanRequest, context: Context
    ) -> pb.DeletePlanResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        await self._plans.delete(
            request.shop_id, request.plan_id, request.etag, request_key("DeletePlan", request)
        )
        return pb.DeletePlanResponse()

    async def PublishPlan(
        self, request: pb.PublishPlanRequest, context: Context
    ) -> pb.PublishPlanResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        plan = await self._plans.publish(
            request.shop_id,
            request.plan_id,
            request.etag,
            call_context.actor.get(),
            request_key("PublishPlan", request),
        )
        return pb.PublishPlanResponse(plan=plan_to_proto(plan))

    async def PausePlan(
        self, request: pb.PausePlanRequest, context: Context
    ) -> pb.PausePlanResponse:
        plan = await self._step(request, context, lifecycle.pause, "PausePlan")
        if self._runs is not None:
            await self._runs.follow(plan)
        return pb.PausePlanResponse(plan=plan_to_proto(plan))

    async def ResumePlan(
        self, request: pb.ResumePlanRequest, context: Context
    ) -> pb.ResumePlanResponse:
        plan = await self._step(request, context, lifecycle.resume, "ResumePlan")
        if self._runs is not None:
            await self._runs.follow(plan)
        return pb.ResumePlanResponse(plan=plan_to_proto(plan))

    async def EndPlan(self, request: pb.EndPlanRequest, context: Context) -> pb.EndPlanResponse:
        if len(request.reason) > 500:
            require([FieldViolation("reason", "at most 500 characters")])
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        plan, recovered = await self._plans.end(
            request.shop_id,
            request.plan_id,
            request.etag,
            call_context.actor.get(),
            request_key("EndPlan", request),
            request.recover_unused_benefits,
            request.reason,
            self._runs.follow if self._runs is not None else None,
        )
        return pb.EndPlanResponse(plan=plan_to_proto(plan), recovered_count=recovered)

    async def _step(
        self,
        request: pb.PublishPlanRequest
        | pb.PausePlanRequest
        | pb.ResumePlanRequest
        | pb.EndPlanRequest,
        context: Context,
        action: Callable[[Plan, str, datetime], Plan],
        operation: str,
    ) -> Plan:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        return await self._plans.transition(
            request.shop_id,
            request.plan_id,
            request.etag,
            action,
            call_context.actor.get(),
            request_key(operation, request),
        )

    async def ListPlanTemplates(
        self, request: pb.ListPlanTemplatesRequest, context: Context
    ) -> pb.ListPlanTemplatesResponse:
        violations = shop_id_violations(request.shop_id) + page_size_violations(request.page_size)
        product = _product_filter(request, violations)
        office = FRONT_OFFICES.get(request.front_office) if request.front_office else None
        if request.front_office and office is None:
            violations.append(FieldViolation("front_office", "unknown value"))
        require(violations)
        scope = f"templates|{product}|{request.front_office}"
        after = decode_page_token(request.page_token, scope, lambda p: str(p["id"]))
        found = [
            t
            for t in self._plans.templates(product, office)
            if after is None or t.template_id > after
        ]
        size = effective_page_size(request.page_size)
        page = found[:size]
        token = encode_page_token({"id": page[-1].template_id}, scope) if len(found) > size else ""
        return pb.ListPlanTemplatesResponse(
            templates=[_template_to_proto(t) for t in page], next_page_token=token
        )

    async def CreatePlanFromTemplate(
        self, request: pb.CreatePlanFromTemplateRequest, context: Context
    ) -> pb.CreatePlanFromTemplateResponse:
        violations = shop_id_violations(request.shop_id)
        if not request.template_id:
            violations.append(FieldViolation("template_id", "required"))
        require(violations)
        overrides = spec_from_proto(request.overrides, "overrides", check=False)
        plan = await self._plans.create_from_template(
            request.shop_id,
            request.template_id,
            overrides,
            renamed(request.override_mask.paths),
            call_context.actor.get(),
            request_key("CreatePlanFromTemplate", request),
        )
        return pb.CreatePlanFromTemplateResponse(plan=plan_to_proto(plan))

    async def PreviewPlan(
        self, request: pb.PreviewPlanRequest, context: Context
    ) -> pb.PreviewPlanResponse:
        violations = shop_id_violations(request.shop_id)
        subject = request.WhichOneof("subject")
        if subject is None:
            violations.append(FieldViolation("plan_id", "set plan_id or plan"))
        if request.fire_time_count < 0:
            violations.append(FieldViolation("fire_time_count", "must be >= 0"))
        parts = set(request.parts) or {
            pb.PREVIEW_PART_AUDIENCE_ESTIMATE,
            pb.PREVIEW_PART_FIRE_TIMES,
            pb.PREVIEW_PART_INVENTORY,
        }
        for i, part in enumerate(request.parts):
            if part not in pb.PreviewPart.values() or part == pb.PREVIEW_PART_UNSPECIFIED:
                violations.append(FieldViolation(f"parts[{i}]", f"unknown preview part {part}"))
        require(violations)
        target: Plan | PlanSpec
        if subject == "plan_id":
            target = await self._plans.get(request.shop_id, request.plan_id)
        else:
            target = spec_from_proto(request.plan)
        names = {
            pb.PREVIEW_PART_AUDIENCE_ESTIMATE: "audience",
            pb.PREVIEW_PART_FIRE_TIMES: "fire_times",
            pb.PREVIEW_PART_INVENTORY: "inventory",
        }
        seen = await self._plans.preview(
            request.shop_id,
            target,
            {names[p] for p in parts},
            min(request.fire_time_count or 5, 50),
        )
        response = pb.PreviewPlanResponse(
            next_fire_times=[timestamp(t) for t in seen.fire_times],
            inventory_checks=[
                pb.InventoryCheck(
                    template_id=c.template_id,
                    required=c.required,
                    available=c.available,
                    unlimited=c.unlimited,
                    sufficient=c.sufficient,
                )
                for c in seen.inventory
            ],
            warnings=[
                pb.PreviewWarning(field=w.field, reason=w.reason, message=w.message)
                for w in seen.warnings
            ],
            run_estimates=[
                pb.RunEstimate(
                    fire_time=timestamp(r.fire_time), count=r.size.count, exact=r.size.exact
                )
                for r in seen.runs
            ],
        )
        if seen.unknown is not None:
            response.unknown_members.CopyFrom(
                pb.UnknownMembers(count=seen.unknown.count, first_member_ids=seen.unknown.first)
            )
        if seen.audience is not None:
            response.audience_estimate.CopyFrom(
                pb.AudienceEstimate(count=seen.audience.count, exact=seen.audience.exact)
            )
        return response

    async def ExplainTermExpression(
        self, request: pb.ExplainTermExpressionRequest, context: Context
    ) -> pb.ExplainTermExpressionResponse:
        violations = shop_id_violations(request.shop_id)
        if not request.expression.strip():
            violations.append(
                FieldViolation("expression", "required, e.g. '* 20-30 8-20 * * ? 31'")
            )
        zone = request.time_zone or DEFAULT_TIME_ZONE
        if not is_time_zone(zone):
            violations.append(
                FieldViolation("time_zone", "must be an IANA time zone such as Asia/Shanghai")
            )
        if request.count < 0:
            violations.append(FieldViolation("count", "must be >= 0 (0 = 5)"))
        for name in ("from_time", "anchor_time"):
            # Compared as seconds: a Timestamp can hold more than datetime can.
            if request.HasField(name) and not in_term_years(getattr(request, name).seconds):
                violations.append(FieldViolation(name, "must be between 1970 and 2199"))
        require(violations)
        start = (
            request.from_time.ToDatetime(UTC)
            if request.HasField("from_time")
            else self._clock.now()
        )
        anchor = request.anchor_time.ToDatetime(UTC) if request.HasField("anchor_time") else start
        answer = explain(request.expression, zone, start, anchor, min(request.count or 5, 50))
        response = pb.ExplainTermExpressionResponse(
            valid=answer.valid,
            violations=[
                pb.TermViolation(field=v.field, description=v.description)
                for v in answer.violations
            ],
            normalized=answer.normalized,
            description=answer.description_en,
            description_zh=answer.description_zh,
            next_fire_times=[timestamp(t) for t in answer.fire_times],
        )
        if answer.kind is not None:
            response.type_code = answer.kind.value
            response.type_name = answer.kind.label
        elif answer.calculator:  # a registered calculator has a name, no type code
            response.type_name = answer.calculator
        for window in answer.windows:
            shown = response.next_windows.add(start=timestamp(window.start))
            if window.end is not None:
                shown.end.CopyFrom(timestamp(window.end))
        return response


_DOWNSTREAMS_BACK = {name: number for number, name in DOWNSTREAM_NAMES.items()}


def _throttle_to_proto(t: Throttle) -> pb.ThrottleSetting:
    return pb.ThrottleSetting(
        downstream=_DOWNSTREAMS_BACK[t.downstream],
        rate_per_second=t.settings.rate,
        burst=t.settings.capacity,
        shop_id=t.shop_id,
        effective_rate_per_second=t.effective_rate,
        etag=t.etag,
    )


def _template_to_proto(t: ProductTemplate) -> pb.PlanTemplate:
    allowed = t.allowed
    return pb.PlanTemplate(
        template_id=t.template_id,
        product_id=t.preset.product_id,
        business_product=business_product_to_proto(t.preset.product_id),  # type: ignore[arg-type]
        display_name=t.display_name,
        description=t.description,
        preset=spec_to_proto(t.preset),
        editable_fields=t.editable_fields,
        front_offices=sorted(front_office_to_proto(f) for f in t.front_offices),  # type: ignore[misc]
        allowed=pb.ProductComponents(
            effective=sorted(allowed.effective),
            term=sorted(allowed.term),
            execution=sorted(allowed.execution),
            audience=sorted(allowed.audience),
            actions=sorted(allowed.actions),
        ),
    )


def _product_filter(
    request: pb.ListPlansRequest | pb.ListPlanTemplatesRequest, violations: list[FieldViolation]
) -> str:
    """The product a list asks for ("" for any): its id, or the deprecated enum's."""
    if request.product_id:
        if not PRODUCT_ID.fullmatch(request.product_id):
            violations.append(FieldViolation("product_id", "a product id, e.g. member_day"))
        return request.product_id
    product = BUSINESS_PRODUCTS.get(request.business_product)
    if product is None:
        violations.append(
            FieldViolation("business_product", f"unknown value {request.business_product}")
        )
        return ""
    return str(product)


def _plan_cursor(position: dict[str, Any]) -> PlanCursor:
    return PlanCursor(*_plan_position(position))


_RUN_ID = re.compile(r"^[a-z][0-9a-f]{20}$")
_plan_position = time_id_reader(PLAN_ID)


def _run_violations(
    request: pb.GetPlanRunRequest
    | pb.CancelPlanRunRequest
    | pb.RetryFailedItemsRequest
    | pb.RecoverPlanRunRequest,
) -> list[FieldViolation]:
    violations = shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id)
    if not _RUN_ID.match(request.run_id):
        violations.append(FieldViolation("run_id", "required: a run id as ListPlanRuns gives"))
    return violations


_run_cursor = time_id_reader(_RUN_ID)


def _spec_or_violations(msg: pb.Plan, violations: list[FieldViolation]) -> PlanSpec | None:
    """The spec, or None with its violations added to the request's others."""
    try:
        return spec_from_proto(msg)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
        return None


def _changes(msg: pb.Plan) -> PlanSpec:
    """The new values of an update. Fields outside the mask may be blank, so
    the whole spec is checked only once the mask is applied to the stored plan."""
    return spec_from_proto(msg, check=False)
