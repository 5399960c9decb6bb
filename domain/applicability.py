"""Whether a plan applies at an instant: inside a window of its effective
time and a window of its operation term (a notion left unset does not
restrict), and until when that answer holds.

The answer can change only at a window edge of one of the two, so a caller
may keep it until `until` and ask again then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import term
from domain.plan import PlanTime

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Applicability:
    applies: bool
    # When the plan applies: the end of the window it applies in (None: open).
    window_end: datetime | None
    # The answer holds for instants before this (None: for ever).
    until: datetime | None

    def holds_at(self, at: datetime) -> bool:
        return self.until is None or at < self.until


def applicability(
    time: PlanTime, zone: str, anchor: datetime | None, now: datetime
) -> Applicability:
    """`anchor` is what "immediately" and "after a delay" count from (the publish time)."""
    applies = True
    ends: list[datetime] = []  # edges of the windows now is in
    starts: list[datetime] = []  # next openings of the notions now is outside of
    for text in (time.effective, time.term):
        if not text:
            continue
        expression = term.parse(text)
        nearby = term.windows(
            expression, now, now + term.schedule.HORIZON, zone, anchor or now, limit=2
        )
        inside = next((w for w in nearby if w.contains(now)), None)
        if inside is not None:
            if inside.end is not None:
                ends.append(inside.end)
            continue
        applies = False
        later = next((w.start for w in nearby if w.start > now), None)
        if later is not None:
            starts.append(later)
    if applies:
        end = min(ends, default=None)
        return Applicability(True, end, end)
    return Applicability(False, None, min(starts + ends, default=None))
