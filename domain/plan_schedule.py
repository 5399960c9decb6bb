"""When a plan fires: its execution time, inside its effective time and its
operation term.

A fire time of the execution expression counts when the plan is in effect
(at or after the start of its effective time's first window) and inside a
window of its operation term. Unset notions do not restrict.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain import term
from domain.plan import PlanTime

_TICK = timedelta(microseconds=1)
_MAX_TERM_WINDOWS = 400  # bounded: a plan's term is looked at window by window


def next_fire_times(
    time: PlanTime, zone: str, after: datetime, count: int, anchor: datetime
) -> list[datetime]:
    """The plan's next `count` fire times strictly after `after`.

    `anchor` is what "immediately" and "after a delay" count from (the
    publish time, or now for a plan not yet published)."""
    if not time.execution or count <= 0:
        return []
    execution = term.parse(time.execution)
    horizon = after + term.schedule.HORIZON
    cursor = after
    in_effect = anchor  # from when the plan may act
    if time.effective:
        effective = term.parse(time.effective)
        first = term.windows(effective, anchor, horizon, zone, anchor, limit=1)
        if not first:
            return []
        cursor = max(cursor, first[0].start - _TICK)
        in_effect = max(anchor, first[0].start)
    if execution.kind is term.TermKind.IMMEDIATE:
        # "Immediately" fires once, as soon as the plan may act: from the
        # anchor on, in effect and inside its term. That instant does not
        # depend on `after`: asked again after it, there is nothing more.
        once = in_effect
        if time.term:
            until = once + term.schedule.HORIZON
            opening = term.windows(term.parse(time.term), once, until, zone, anchor, limit=1)
            if not opening:
                return []
            once = max(once, opening[0].start)
        return [once] if once > after else []
    if not time.term:
        return term.next_fire_times(execution, cursor, zone, count, anchor)

    # Walk the term's windows and ask for fire times inside each, so a
    # fine-grained execution time never scans the gaps between them.
    fires: list[datetime] = []
    operation = term.parse(time.term)
    for window in term.windows(operation, cursor, horizon, zone, anchor, limit=_MAX_TERM_WINDOWS):
        start = max(cursor, window.start - _TICK)
        for fire in term.next_fire_times(execution, start, zone, count - len(fires), anchor):
            if window.end is not None and fire >= window.end:
                break
            fires.append(fire)
        if len(fires) >= count:
            break
    return fires[:count]
