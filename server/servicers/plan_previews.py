"""The preview calls of OperationPlanService (thin: proto <-> domain): what a
plan would do, and what a term expression means."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation, require
from domain.plan import Plan, PlanSpec
from domain.ports import Clock
from domain.zones import DEFAULT_TIME_ZONE, is_time_zone
from server.downstream.wire import timestamp
from server.mapping.plan import in_term_years, spec_from_proto
from server.servicers.requests import shop_id_violations
from server.usecases.plans import PlanUseCases
from server.usecases.terms import explain


class PlanPreviewCalls:
    """Mixed into the plan service: previewing a plan, explaining a term expression."""

    _plans: PlanUseCases
    _clock: Clock

    async def PreviewPlan(
        self, request: pb.PreviewPlanRequest, context: Any
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
        self, request: pb.ExplainTermExpressionRequest, context: Any
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
