"""The run calls of OperationPlanService (thin: proto <-> domain): list, read,
trigger, recover, cancel and retry a plan's runs, and its statistics."""

from __future__ import annotations

from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation, Unimplemented, require
from domain.runs import MAX_TEST_MEMBERS
from server.mapping.outcomes import counts_to_proto
from server.mapping.runs import RUN_STATES, run_to_proto, totals_to_proto
from server.servicers.requests import (
    RUN_ID,
    decode_page_token,
    effective_page_size,
    page_size_violations,
    plan_id_violations,
    request_key,
    shop_id_violations,
    time_id_reader,
    time_id_token,
)
from server.usecases.outcomes import OutcomeUseCases
from server.usecases.runs import RunUseCases


class PlanRunCalls:
    """Mixed into the plan service: a plan's runs (UNIMPLEMENTED without the engine)."""

    _runs: RunUseCases | None
    _outcomes: OutcomeUseCases | None

    def _run_cases(self) -> RunUseCases:
        if self._runs is None:
            raise Unimplemented("runs need the task engine, which this server does not run")
        return self._runs

    async def ListPlanRuns(
        self, request: pb.ListPlanRunsRequest, context: Any
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
        self, request: pb.GetPlanRunRequest, context: Any
    ) -> pb.GetPlanRunResponse:
        require(_run_violations(request))
        view = await self._run_cases().get(request.shop_id, request.plan_id, request.run_id)
        return pb.GetPlanRunResponse(run=run_to_proto(view))

    async def TriggerPlanRun(
        self, request: pb.TriggerPlanRunRequest, context: Any
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
        shop, plan, request_id = request.shop_id, request.plan_id, request.request_id
        view = await runs.once(
            shop,
            plan,
            request_key("TriggerPlanRun", request),
            lambda: (
                runs.test(shop, plan, request_id, testers)
                if testers
                else runs.trigger(shop, plan, request_id)
            ),
        )
        return pb.TriggerPlanRunResponse(run=run_to_proto(view))

    async def RecoverPlanRun(
        self, request: pb.RecoverPlanRunRequest, context: Any
    ) -> pb.RecoverPlanRunResponse:
        violations = _run_violations(request)
        if len(request.request_id) > 128:
            violations.append(FieldViolation("request_id", "at most 128 characters"))
        if len(request.reason) > 200:
            violations.append(FieldViolation("reason", "at most 200 characters"))
        require(violations)
        runs = self._run_cases()
        view = await runs.once(
            request.shop_id,
            request.plan_id,
            request_key("RecoverPlanRun", request),
            lambda: runs.recover(
                request.shop_id, request.plan_id, request.run_id, request.request_id, request.reason
            ),
        )
        return pb.RecoverPlanRunResponse(run=run_to_proto(view))

    async def CancelPlanRun(
        self, request: pb.CancelPlanRunRequest, context: Any
    ) -> pb.CancelPlanRunResponse:
        require(_run_violations(request))
        runs = self._run_cases()
        view = await runs.once(
            request.shop_id,
            request.plan_id,
            request_key("CancelPlanRun", request),
            lambda: runs.cancel(request.shop_id, request.plan_id, request.run_id),
        )
        return pb.CancelPlanRunResponse(run=run_to_proto(view))

    async def RetryFailedItems(
        self, request: pb.RetryFailedItemsRequest, context: Any
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
        self, request: pb.GetPlanStatisticsRequest, context: Any
    ) -> pb.GetPlanStatisticsResponse:
        require(shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id))
        totals = await self._run_cases().totals(request.shop_id, request.plan_id)
        statistics = totals_to_proto(request.plan_id, totals)
        if self._outcomes is not None:
            overall, daily = await self._outcomes.counts(request.shop_id, request.plan_id)
            statistics.outcome_counts.extend(counts_to_proto(overall))
            statistics.daily_outcome_counts.extend(counts_to_proto(daily))
        return pb.GetPlanStatisticsResponse(statistics=statistics)


def _run_violations(
    request: pb.GetPlanRunRequest
    | pb.CancelPlanRunRequest
    | pb.RetryFailedItemsRequest
    | pb.RecoverPlanRunRequest,
) -> list[FieldViolation]:
    violations = shop_id_violations(request.shop_id) + plan_id_violations(request.plan_id)
    if not RUN_ID.match(request.run_id):
        violations.append(FieldViolation("run_id", "required: a run id as ListPlanRuns gives"))
    return violations


_run_cursor = time_id_reader(RUN_ID)
