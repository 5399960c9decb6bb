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

_BATCH = 50
_MAX_BATCHES = 40  # bounded: at most 2000 candidate fire times are looked at


def next_fire_times(
    time: PlanTime, zone: str, after: datetime, count: int, anchor: datetime
) -> list[datetime]:
    """The plan's next `count` fire times strictly after `after`.

    `anchor` is what "immediately" and "after a delay" count from (the
    publish time, or now for a plan not yet published)."""
    if not time.execution or count <= 0:
        return []
    execution = term.parse(time.execution)
    effective_from = anchor
    if time.effective:
        first = term.windows(
            term.parse(time.effective),
            anchor,
            anchor + term.schedule.HORIZON,
            zone,
            anchor,
            limit=1,
        )
        if not first:
            return []
        effective_from = first[0].start
    operation = term.parse(time.term) if time.term else None

    fires: list[datetime] = []
    cursor = max(after, effective_from - timedelta(microseconds=1))
    for _ in range(_MAX_BATCHES):
        batch = term.next_fire_times(execution, cursor, zone, _BATCH, anchor)
        for fire in batch:
            if operation is None or term.is_active(operation, fire, zone, anchor):
                fires.append(fire)
                if len(fires) == count:
                    return fires
        if len(batch) < _BATCH:
            break
        cursor = batch[-1]
    return fires
