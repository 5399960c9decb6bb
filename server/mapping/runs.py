"""Runs and plan statistics on the wire."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from custops.plan.v1 import plan_pb2 as pb
from domain.runs import RunKind, RunTrigger
from server.downstream.wire import timestamp
from server.persistence.run_store import SKIPPED
from server.usecases.run_launches import ENDED_STATES, PlanTotals, RunView

RUN_STATES = {
    "pending": pb.RUN_STATE_PENDING,
    "running": pb.RUN_STATE_RUNNING,
    "paused": pb.RUN_STATE_PAUSED,
    "succeeded": pb.RUN_STATE_SUCCEEDED,
    "completed_with_failures": pb.RUN_STATE_COMPLETED_WITH_FAILURES,
    "cancelled": pb.RUN_STATE_CANCELLED,
    SKIPPED: pb.RUN_STATE_SKIPPED,
}
RUN_KINDS = {
    RunKind.DELIVERY: pb.RUN_KIND_DELIVERY,
    RunKind.RECOVERY: pb.RUN_KIND_RECOVERY,
    RunKind.TEST: pb.RUN_KIND_TEST,
}
_TRIGGERS = {
    RunTrigger.SCHEDULE: pb.RUN_TRIGGER_SCHEDULE,
    RunTrigger.MANUAL: pb.RUN_TRIGGER_MANUAL,
    RunTrigger.CATCH_UP: pb.RUN_TRIGGER_CATCH_UP,
    RunTrigger.EVENT: pb.RUN_TRIGGER_EVENT,
}


def _skipped(counters: dict[str, int]) -> dict[str, int]:
    return {k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("skipped.")}


def _state(view: RunView) -> str:
    if view.run.skip_reason:
        return SKIPPED
    return view.progress.state if view.progress else "pending"


def run_to_proto(view: RunView) -> pb.PlanRun:
    run, progress, counters = view.run, view.progress, view.counters
    msg = pb.PlanRun(
        name=f"shops/{run.shop_id}/plans/{run.plan_id}/runs/{run.run_id}",
        run_id=run.run_id,
        plan_id=run.plan_id,
        shop_id=run.shop_id,
        fire_time=timestamp(run.fire_time),
        state=RUN_STATES.get(_state(view), pb.RUN_STATE_PENDING),
        trigger=_TRIGGERS[run.trigger],
        kind=RUN_KINDS[run.kind],
        recovers_run_id=run.target_run_id,
        skip_reason=run.skip_reason,
        create_time=timestamp(run.create_time),
        progress=pb.RunProgress(
            targeted=counters.get("targeted", 0),
            granted=counters.get("granted", 0),
            sent=counters.get("sent", 0),
            skipped=_skipped(counters),
            recovered=counters.get("recovered", 0),
        ),
    )
    if run.resume_time is not None:
        msg.resume_time.CopyFrom(timestamp(run.resume_time))
    if progress is not None:
        msg.progress.total = progress.total
        msg.progress.done = progress.processed
        msg.progress.failed = progress.failed - progress.dead
        msg.progress.dead = progress.dead
        msg.progress.failed_by_reason.update(progress.failed_by_reason)
        msg.progress.rate_per_second = progress.rate
        if progress.eta is not None:
            msg.progress.eta.CopyFrom(Duration(seconds=int(progress.eta.total_seconds())))
        if progress.started is not None:
            msg.start_time.CopyFrom(timestamp(progress.started))
        if progress.state in ENDED_STATES and progress.updated is not None:
            msg.end_time.CopyFrom(timestamp(progress.updated))
    return msg


def totals_to_proto(plan_id: str, totals: PlanTotals) -> pb.PlanStatistics:
    c = totals.counters
    granted, used, replenished = c.get("granted", 0), c.get("used", 0), c.get("replenished", 0)
    return pb.PlanStatistics(
        plan_id=plan_id,
        runs=totals.runs,
        members_targeted=c.get("targeted", 0),
        benefits_granted=granted,
        messages_sent=c.get("sent", 0),
        benefits_used=used,
        benefits_replenished=replenished,
        # Benefits in use now, per benefit granted (a refund gives a use back).
        use_rate=(used - replenished) / granted if granted else 0.0,
        benefits_recovered=c.get("recovered", 0),
        skipped=_skipped(c),
        failed=totals.failed,
        dead=totals.dead,
        budget_used=totals.budget_used,
        test_runs=totals.test_runs,
        test_benefits_granted=totals.test_counters.get("granted", 0),
        test_messages_sent=totals.test_counters.get("sent", 0),
    )
