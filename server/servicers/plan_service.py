"""custops.plan.v1.OperationPlanService: plans for merchants' admins.

RPCs not built yet fall through to the generated base class, which the call
interceptor answers with UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeAlias

import grpc

from custops.plan.v1 import plan_pb2 as pb
from custops.plan.v1 import plan_pb2_grpc
from domain import lifecycle
from domain.errors import FieldViolation, InvalidArgument, require
from domain.plan import MAX_NAME_LENGTH, Plan, PlanSpec
from domain.ports import Clock, PlanCursor, PlanFilter
from server import call_context
from server.mapping.plan import (
    FRONT_OFFICES,
    PLAN_STATES,
    plan_to_proto,
    renamed,
    spec_from_proto,
)
from server.servicers.approvals import ApprovalCalls
from server.servicers.outcomes import OutcomeCalls
from server.servicers.plan_previews import PlanPreviewCalls
from server.servicers.plan_runs import PlanRunCalls
from server.servicers.plan_templates import PlanTemplateCalls
from server.servicers.requests import (
    PLAN_ID,
    decode_page_token,
    effective_page_size,
    page_size_violations,
    plan_id_violations,
    product_filter,
    request_key,
    shop_id_violations,
    time_id_reader,
    time_id_token,
)
from server.servicers.shop_policy import ShopPolicyCalls
from server.servicers.throttle_settings import ThrottleSettingCalls
from server.usecases.outcomes import OutcomeUseCases
from server.usecases.plan_effect import PlanEffectUseCases
from server.usecases.plans import PlanUseCases
from server.usecases.runs import RunUseCases
from server.usecases.shop_policy import ShopPolicyUseCases
from server.usecases.throttle import ThrottleUseCases

Context: TypeAlias = grpc.aio.ServicerContext


class OperationPlanService(
    PlanRunCalls,
    OutcomeCalls,
    PlanTemplateCalls,
    PlanPreviewCalls,
    ThrottleSettingCalls,
    ShopPolicyCalls,
    ApprovalCalls,
    plan_pb2_grpc.OperationPlanServiceServicer,
):
    """Plans and their lifecycle here; the other calls are the mixins'."""

    def __init__(
        self,
        plans: PlanUseCases,
        clock: Clock,
        throttle: ThrottleUseCases,
        policies: ShopPolicyUseCases,
        runs: RunUseCases | None = None,
        outcomes: OutcomeUseCases | None = None,
        effects: PlanEffectUseCases | None = None,
    ) -> None:
        self._plans = plans
        self._clock = clock
        self._throttle = throttle
        self._policies = policies
        self._runs = runs
        self._outcomes = outcomes
        self._effects = effects

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
        product = product_filter(request, violations)
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
                    "update_mask",
                    'required: name the fields to change, e.g. "updateMask": "displayName" '
                    "in JSON (display_name in a binary FieldMask)",
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


_plan_position = time_id_reader(PLAN_ID)


def _plan_cursor(position: dict[str, Any]) -> PlanCursor:
    return PlanCursor(*_plan_position(position))


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
