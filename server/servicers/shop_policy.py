"""The contact-policy calls of OperationPlanService (thin: proto <-> domain)."""

from __future__ import annotations

from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain import shop_policy
from domain.errors import FieldViolation, require
from server import call_context
from server.mapping.shop_policy import limits_from_proto, policy_to_proto
from server.servicers.requests import request_key, shop_id_violations
from server.usecases.shop_policy import ShopPolicyUseCases


class ShopPolicyCalls:
    """Mixed into the plan service: a shop's policy."""

    _policies: ShopPolicyUseCases

    async def GetShopPolicy(
        self, request: pb.GetShopPolicyRequest, context: Any
    ) -> pb.GetShopPolicyResponse:
        require(shop_id_violations(request.shop_id))
        policy = await self._policies.get(request.shop_id)
        return pb.GetShopPolicyResponse(policy=policy_to_proto(policy))

    async def UpdateShopPolicy(
        self, request: pb.UpdateShopPolicyRequest, context: Any
    ) -> pb.UpdateShopPolicyResponse:
        shop_id = request.policy.shop_id
        violations = [
            FieldViolation(f"policy.{v.field}", v.description) for v in shop_id_violations(shop_id)
        ]
        limits = limits_from_proto(list(request.policy.contact_limits), violations)
        threshold = request.policy.approval_threshold
        require(violations + shop_policy.violations(limits, threshold))
        policy = await self._policies.update(
            shop_id,
            limits,
            threshold,
            request.policy.etag,
            call_context.actor.get(),
            request_key("UpdateShopPolicy", request),
        )
        return pb.UpdateShopPolicyResponse(policy=policy_to_proto(policy))
