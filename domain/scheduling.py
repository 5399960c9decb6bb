"""The scheduler's decisions for one plan at one instant, as a pure function
of the plan's calendar. The server's scheduler is a thin loop that carries
them out: start these runs, record these skipped fires, end the plan.

A fire the scheduler meets more than `LATE_AFTER` after its time was missed
(the platform was down): the plan's missed-fire policy runs the latest
missed fire once (RUN_ONCE) or none (SKIP), and the fires passed over are
recorded as skipped (MISSED).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.plan import MissedFirePolicy
from domain.plan_calendar import TICK, End, Fire, PlanCalendar, Skip, SkipReason, Wait
from domain.runs import RunTrigger

LATE_AFTER = timedelta(minutes=1)
# Decisions carried out per plan and tick; a plan with more (skips after a
# long outage) goes on at the next tick.
MAX_DECISIONS = 50


@dataclass(frozen=True)
class RunStart:
    fire_time: datetime  # the run's fire time (its period)
    named_for: datetime  # the fire its id is derived from: for a catch-up, the first missed
    trigger: RunTrigger


@dataclass(frozen=True)
class Step:
    starts: tuple[RunStart, ...]
    skips: tuple[Skip, ...]
    # Nothing lies ahead and the time has come: the plan ends once its runs have.
    end: End | None
    cursor: datetime  # decisions are made up to and including this instant
    next_check: datetime | None  # when the next decision is due
    next_fire: datetime | None  # the next fire that counts, for merchants to see


def step(calendar: PlanCalendar, cursor: datetime, now: datetime, policy: MissedFirePolicy) -> Step:
    """Everything due for the plan from `cursor` (exclusive) up to `now`."""
    starts: list[RunStart] = []
    skips: list[Skip] = []

    def done(next_check: datetime | None, end: End | None = None) -> Step:
        following = [] if end is not None else calendar.fires(cursor, 1)
        return Step(
            tuple(starts),
            tuple(skips),
            end,
            cursor,
            next_check,
            following[0] if following else None,
        )

    for _ in range(MAX_DECISIONS):
        decision = calendar.next_decision(cursor)
        if decision.at > now:
            return done(decision.at)
        match decision:
            case Fire(at) if at >= now - LATE_AFTER:
                starts.append(RunStart(at, at, RunTrigger.SCHEDULE))
                cursor = at
            case Fire(at):
                latest = calendar.latest_fire(cursor, now) or at
                if policy is MissedFirePolicy.RUN_ONCE:
                    starts.append(RunStart(latest, at, RunTrigger.CATCH_UP))
                    if latest > at:
                        skips.append(Skip(at, SkipReason.MISSED, latest))
                else:
                    following = calendar.fires(latest, 1)
                    resume = following[0] if following else latest
                    skips.append(Skip(at, SkipReason.MISSED, resume))
                cursor = latest
            case Skip(_, _, resume):
                skips.append(decision)
                cursor = resume - TICK
            case Wait(at):
                cursor = at - TICK
            case End():
                return done(decision.at, decision)
    return done(now)
