"""The template calls of OperationPlanService (thin: proto <-> domain): the
product templates a shop may start a plan from."""

from __future__ import annotations

from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation, require
from domain.products import ProductTemplate
from server import call_context
from server.mapping.plan import (
    FRONT_OFFICES,
    business_product_to_proto,
    front_office_to_proto,
    plan_to_proto,
    renamed,
    spec_from_proto,
    spec_to_proto,
)
from server.servicers.requests import (
    decode_page_token,
    effective_page_size,
    encode_page_token,
    page_size_violations,
    product_filter,
    request_key,
    shop_id_violations,
)
from server.usecases.plans import PlanUseCases


class PlanTemplateCalls:
    """Mixed into the plan service: listing templates, and a plan from one."""

    _plans: PlanUseCases

    async def ListPlanTemplates(
        self, request: pb.ListPlanTemplatesRequest, context: Any
    ) -> pb.ListPlanTemplatesResponse:
        violations = shop_id_violations(request.shop_id) + page_size_violations(request.page_size)
        product = product_filter(request, violations)
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
        self, request: pb.CreatePlanFromTemplateRequest, context: Any
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
