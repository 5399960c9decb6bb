"""The outcome calls of OperationPlanService (thin: proto <-> domain): list
and export members' outcomes, and a plan's effect."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation, Unimplemented, require
from server.mapping.outcomes import OUTCOME_KINDS, effect_to_proto, outcome_to_proto
from server.persistence.outcome_reads import OutcomeFilter
from server.servicers.requests import (
    MEMBER_ID,
    RUN_ID,
    decode_page_token,
    effective_page_size,
    encode_page_token,
    id_violations,
    page_size_violations,
    plan_id_violations,
    shop_id_violations,
)
from server.usecases.outcomes import Cursor, OutcomeUseCases, Scope
from server.usecases.plan_effect import PlanEffectUseCases

_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,31}\Z")


class OutcomeCalls:
    """Mixed into the plan service: members' outcomes (UNIMPLEMENTED without runs)."""

    _outcomes: OutcomeUseCases | None
    _effects: PlanEffectUseCases | None

    def _outcome_cases(self) -> OutcomeUseCases:
        if self._outcomes is None:
            raise Unimplemented("outcomes need the task engine, which this server does not run")
        return self._outcomes

    async def ListMemberOutcomes(
        self, request: pb.ListMemberOutcomesRequest, context: Any
    ) -> pb.ListMemberOutcomesResponse:
        violations = shop_id_violations(request.shop_id) + page_size_violations(request.page_size)
        if request.member_id:
            violations += id_violations("member_id", request.member_id)
            if request.plan_id or request.run_id:
                violations.append(
                    FieldViolation("member_id", "set member_id alone, or plan_id (and run_id)")
                )
        else:
            violations += _plan_and_run(request.plan_id, request.run_id)
        which = _which(request.outcomes, request.reason, violations)
        require(violations)
        scope = Scope(request.shop_id, request.plan_id, request.run_id, request.member_id)
        kinds = ",".join(sorted(k.value for k in which.kinds))
        text = f"outcomes|{scope.shop_id}|{scope.plan_id}|{scope.run_id}|{scope.member_id}"
        text += f"|{kinds}|{which.reason}"
        after = decode_page_token(request.page_token, text, _cursor)
        size = effective_page_size(request.page_size)
        found = await self._outcome_cases().page(scope, which, after, size + 1)
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = encode_page_token({"r": last.run_id, "m": last.member_id}, text)
        return pb.ListMemberOutcomesResponse(
            outcomes=[outcome_to_proto(o) for o in found[:size]], next_page_token=token
        )

    async def ExportMemberOutcomes(
        self, request: pb.ExportMemberOutcomesRequest, context: Any
    ) -> AsyncIterator[pb.ExportMemberOutcomesResponse]:
        violations = shop_id_violations(request.shop_id)
        violations += _plan_and_run(request.plan_id, request.run_id)
        which = _which(request.outcomes, request.reason, violations)
        require(violations)
        scope = Scope(request.shop_id, request.plan_id, request.run_id)
        total, chunks = await self._outcome_cases().export(scope, which)
        sent = False
        async for chunk in chunks:
            yield pb.ExportMemberOutcomesResponse(
                outcomes=[outcome_to_proto(o) for o in chunk], total_count=total
            )
            sent = True
        if not sent:  # one message all the same: the count says there is nothing
            yield pb.ExportMemberOutcomesResponse(total_count=total)

    async def GetPlanEffect(
        self, request: pb.GetPlanEffectRequest, context: Any
    ) -> pb.GetPlanEffectResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        if self._effects is None:
            raise Unimplemented("plan effects need the task engine, which this server does not run")
        found = await self._effects.effect(request.shop_id, request.plan_id)
        return pb.GetPlanEffectResponse(effect=effect_to_proto(found))


def _plan_and_run(plan_id: str, run_id: str) -> list[FieldViolation]:
    """A plan, a run of it, or a run alone (its id names its plan)."""
    violations = plan_id_violations(plan_id) if plan_id or not run_id else []
    if run_id and not RUN_ID.match(run_id):
        violations.append(FieldViolation("run_id", "a run id as ListPlanRuns gives"))
    return violations


def _which(kinds: Sequence[int], reason: str, violations: list[FieldViolation]) -> OutcomeFilter:
    unknown = [k for k in kinds if k not in OUTCOME_KINDS]
    if unknown:
        violations.append(FieldViolation("outcomes", f"unknown outcome {unknown[0]}"))
    if reason and not _REASON.match(reason):
        violations.append(
            FieldViolation(
                "reason", "a reason code: capital letters, digits and '_', e.g. FREQUENCY_LIMIT"
            )
        )
    return OutcomeFilter(frozenset(OUTCOME_KINDS[k] for k in kinds if k in OUTCOME_KINDS), reason)


def _cursor(position: dict[str, Any]) -> Cursor:
    run, member = position["r"], position["m"]
    if not isinstance(run, str) or not isinstance(member, str):
        raise ValueError("not a position of this list")
    if not RUN_ID.match(run) or not MEMBER_ID.match(member):
        raise ValueError("not a position of this list")
    return Cursor(run, member)
