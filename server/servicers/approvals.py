"""The approval calls of OperationPlanService (thin: proto <-> domain)."""

from __future__ import annotations

from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation, require
from server import call_context
from server.mapping.plan import plan_to_proto
from server.servicers.requests import plan_id_violations, request_key, shop_id_violations
from server.usecases.plans import PlanUseCases

MAX_REASON = 500


class ApprovalCalls:
    """Mixed into the plan service: approving or rejecting a large plan."""

    _plans: PlanUseCases

    async def ApprovePlan(
        self, request: pb.ApprovePlanRequest, context: Any
    ) -> pb.ApprovePlanResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        plan = await self._plans.approve(
            request.shop_id,
            request.plan_id,
            request.etag,
            call_context.actor.get(),
            request_key("ApprovePlan", request),
        )
        return pb.ApprovePlanResponse(plan=plan_to_proto(plan))

    async def RejectPlan(
        self, request: pb.RejectPlanRequest, context: Any
    ) -> pb.RejectPlanResponse:
        violations = shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id)
        if not request.reason.strip() or len(request.reason) > MAX_REASON:
            violations.append(
                FieldViolation("reason", f"required: what to change, 1-{MAX_REASON} characters")
            )
        require(violations)
        plan = await self._plans.reject(
            request.shop_id,
            request.plan_id,
            request.etag,
            request.reason,
            call_context.actor.get(),
            request_key("RejectPlan", request),
        )
        return pb.RejectPlanResponse(plan=plan_to_proto(plan))
