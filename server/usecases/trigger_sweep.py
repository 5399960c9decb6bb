"""The sweep: members' waits that came due become runs of their plans
(docs/triggers.md). It reads the due waits by their index, earliest first
(O(due), however many wait), and in one transaction makes one run per plan
for them and marks them launched, so each wait is acted on once: a crash
before the commit leaves them waiting, after it the run's job carries them
out through the engine like any run (throttled, batched, exactly once per
member of the run).

A run takes one wait per member; a member's second wait due at the same
time goes into the next sweep's run. A wait whose plan has ended, is gone,
or is out of its effective time or term when due is dropped, with the
reason, and acts on nobody. A paused plan's run is made and paused with it,
as its calendar runs are.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from domain import runs, triggers
from domain.plan import Plan, PlanState
from domain.plan_calendar import PlanCalendar
from domain.ports import RunLaunch
from domain.runs import Run
from domain.triggers import Wait
from server.runs.delivery import Delivery
from server.usecases.run_launches import RunLaunches

# Waits settled per sweep; more wait for the next, which comes at once.
SWEEP_LIMIT = 5_000
# Members per run: one batch of the engine's (a sweep that finds more for a
# plan makes several runs), so a run's payload stays small and its members
# go out in one audience call and one transaction of decisions.
RUN_MEMBERS = Delivery.batch_size


class TriggerSweep(RunLaunches):
    async def sweep(self, limit: int = SWEEP_LIMIT) -> int:
        """Turn the waits due now into runs, one per plan; how many waits
        were settled (launched or dropped)."""
        now = self._clock.now()
        launched: list[tuple[Plan, RunLaunch]] = []
        settled = 0
        async with self._uow() as uow:
            due = await uow.waits.due(now, limit)
            if not due:
                return 0
            by_plan: dict[tuple[str, str], list[Wait]] = {}
            for wait in due:
                by_plan.setdefault((wait.shop_id, wait.plan_id), []).append(wait)
            for (shop_id, plan_id), waits in by_plan.items():
                plan = await uow.plans.get(shop_id, plan_id)
                reason = _not_acting(plan, now)
                if reason or plan is None:
                    await uow.waits.dropped(waits, reason)
                    settled += len(waits)
                    continue
                first: dict[str, Wait] = {}
                for wait in waits:
                    first.setdefault(wait.member_id, wait)
                chosen = list(first.values())
                for part in range(0, len(chosen), RUN_MEMBERS):
                    members = chosen[part : part + RUN_MEMBERS]
                    run = self._event_run(plan, members[0], now)
                    launch = self._launch_of(
                        plan, run, event_members=[(w.member_id, w.event_id) for w in members]
                    )
                    await uow.launches.add([launch], now)
                    await uow.waits.launched(members, run.run_id)
                    launched.append((plan, launch))
                settled += len(chosen)
            await uow.commit()
        await self._started(launched)
        return settled

    def _event_run(self, plan: Plan, first: Wait, now: datetime) -> Run:
        return Run(
            runs.event_run_id(plan.shop_id, plan.plan_id, first.member_id, first.event_id),
            plan.shop_id,
            plan.plan_id,
            runs.RunKind.DELIVERY,
            runs.RunTrigger.EVENT,
            now,
            now,
            uuid.uuid4().hex,
            grants=runs.grants(plan),
        )


def _not_acting(plan: Plan | None, now: datetime) -> str:
    """Why a plan's due waits act on nobody now; "" when they act."""
    if plan is None:
        return "PLAN_DELETED"
    if plan.state is PlanState.ENDED:
        return "PLAN_ENDED"
    if plan.state not in (PlanState.ACTIVE, PlanState.PAUSED, PlanState.SCHEDULED):
        return "PLAN_NOT_LIVE"
    if triggers.trigger_of(plan) is None:
        return "NOT_EVENT_TRIGGERED"  # its time was changed to the calendar's
    calendar = PlanCalendar.of(plan, now)
    if not calendar.in_effect(now).value:
        return "NOT_IN_EFFECT"
    if not calendar.in_term(now).value:
        return "OUTSIDE_TERM"
    return ""
