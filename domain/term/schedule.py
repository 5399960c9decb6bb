"""When an expression is active and when it fires, in a given time zone.

Windows are half-open, [start, end): an instant equal to a window's end is
outside it. A window's start is its fire time. Every answer is computed by a
bounded walk over calendar days (or cron instants), so a sparse or
impossible expression yields few or no windows, never an endless search.

Wall times a zone skips (clocks spring forward) are moved forward by the
length of the gap; wall times a zone repeats (clocks fall back) mean their
first occurrence. A window's start and end are converted each on its own,
so a window that becomes empty (02:00-03:00 on the night the clocks skip
that hour) does not open that day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from domain.term.expression import TermExpression, matches_day
from domain.term.fields import LAST, Field
from domain.term.kinds import TermKind
from domain.zones import zone as zone_of

# How far ahead a search for fire times looks: 8 years covers every
# calendar pattern, 29 February included (2096 -> 2104 skips 2100).
HORIZON = timedelta(days=8 * 366)
MAX_WINDOWS = 1000
_MAX_CRON_STEPS = 100_000


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC; `end` None means it never closes."""

    start: datetime
    end: datetime | None

    def contains(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


class AnchorRequired(ValueError):
    """Immediate and delayed times are relative to an anchor (e.g. publishing)."""


def windows(
    e: TermExpression,
    start: datetime,
    end: datetime,
    zone: str,
    anchor: datetime | None = None,
    limit: int = MAX_WINDOWS,
) -> list[Window]:
    """The windows intersecting [start, end), in order, at most `limit`."""
    _check_aware(start, end, anchor)
    found: list[Window] = []
    for window in _walk(e, start, zone_of(zone), anchor, until=end):
        if window.start >= end:
            break
        if window.end is None or window.end > start:
            found.append(window)
            if len(found) >= limit:
                break
    return found


def is_active(e: TermExpression, at: datetime, zone: str, anchor: datetime | None = None) -> bool:
    nearby = windows(e, at, _plus(at, timedelta(microseconds=1)), zone, anchor, limit=2)
    return any(w.contains(at) for w in nearby)


def next_fire_times(
    e: TermExpression,
    after: datetime,
    zone: str,
    count: int,
    anchor: datetime | None = None,
) -> list[datetime]:
    """The next `count` fire times (window starts) strictly after `after`."""
    _check_aware(after, anchor)
    fires: list[datetime] = []
    if count <= 0:
        return fires
    for window in _walk(e, after, zone_of(zone), anchor, until=_plus(after, HORIZON)):
        if window.start > after:
            fires.append(window.start)
            if len(fires) >= count:
                break
    return fires


def _walk(
    e: TermExpression, since: datetime, zone: ZoneInfo, anchor: datetime | None, until: datetime
) -> Iterator[Window]:
    """Windows in order of start, from those still open at `since` (and a
    few before) to `until` at the latest."""
    kind = e.kind
    # A cron window lasts a second; a daily one may have opened the day before.
    since = _plus(since, -timedelta(seconds=1) if kind is TermKind.CRON else -timedelta(days=2))
    if kind in (TermKind.IMMEDIATE, TermKind.DELAY):
        if anchor is None:
            raise AnchorRequired(f"type {kind.value} ({kind.label}) needs an anchor instant")
        yield Window(_plus(anchor, e.delay if kind is TermKind.DELAY else timedelta()), None)
    elif kind is TermKind.FIXED_PERIOD:
        first, last = e.period
        yield Window(_utc(first, zone), _utc(last, zone))
    elif kind is TermKind.CRON:
        yield from _cron(e, since, zone, until)
    else:
        yield from _daily(e, since, zone, until)


def _daily(e: TermExpression, since: datetime, zone: ZoneInfo, until: datetime) -> Iterator[Window]:
    span = e.day_window
    day = since.astimezone(zone).date()
    last = until.astimezone(zone).date()
    if not e.year.any:
        years = e.year.values()
        if not years:
            return
        last = min(last, date(max(years), 12, 31))
        day = max(day, date(min(years), 1, 1) - timedelta(days=1))
    while day <= last:
        if matches_day(e, day):
            midnight = datetime.combine(day, time())
            start = _utc(midnight + timedelta(seconds=span.start), zone)
            end = _utc(midnight + timedelta(seconds=span.end), zone)
            if end > start:
                yield Window(start, end)
        day += timedelta(days=1)


def _cron(e: TermExpression, since: datetime, zone: ZoneInfo, until: datetime) -> Iterator[Window]:
    years = None if e.year.any else sorted(e.year.values())
    # croniter walks naive wall times; _utc gives them the documented DST meaning.
    cursor = since.astimezone(zone).replace(tzinfo=None)
    it = croniter(_cron_text(e), cursor)
    previous: datetime | None = None
    for _ in range(_MAX_CRON_STEPS):
        local: datetime = it.get_next(datetime)
        if years is not None and local.year not in years:
            later = [y for y in years if y > local.year]
            if not later:
                return
            it = croniter(_cron_text(e), datetime(later[0], 1, 1) - timedelta(seconds=1))
            continue
        start = _utc(local, zone)
        if start > until:
            return
        if previous is not None and start <= previous:
            # Wall times moved past a skipped hour land on instants already
            # given (02:30 and 03:30 are both 03:30): each instant fires once.
            continue
        previous = start
        yield Window(start, start + timedelta(seconds=1))


def _cron_text(e: TermExpression) -> str:
    """The croniter form: minute hour day month weekday second (0 = Sunday)."""

    def plain(f: Field) -> str:
        return "*" if f.any else f.format()

    if e.day_of_week.any:
        weekday = "*"
    else:
        weekday = ",".join(str(v % 7) for v in sorted(e.day_of_week.values()))
    day = plain(e.day_of_month)
    if not e.day_of_month.any and LAST in e.day_of_month.values():
        numbered = sorted(v for v in e.day_of_month.values() if v != LAST)
        day = ",".join([*map(str, numbered), "L"])
    return " ".join([plain(e.minute), plain(e.hour), day, plain(e.month), weekday, plain(e.second)])


def _utc(wall: datetime, zone: ZoneInfo) -> datetime:
    # fold=0: a repeated wall time is its first occurrence; a skipped one
    # gets the offset before the gap, which lands it after the gap.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=3)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=3)


def _plus(instant: datetime, delta: timedelta) -> datetime:
    """`instant + delta`, kept inside the range datetime can hold."""
    if delta >= timedelta(0):
        return instant + delta if instant <= _LATEST - delta else _LATEST
    return instant + delta if instant >= _EARLIEST - delta else _EARLIEST


def _check_aware(*instants: datetime | None) -> None:
    for instant in instants:
        if instant is not None and instant.tzinfo is None:
            raise ValueError("instants must be time-zone aware")
