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

import copy
import functools
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, time, timedelta
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
    """Cron instants in order. croniter walks naive wall times; `_utc` gives
    them the documented DST meaning, which moves a skipped wall time past
    real ones of the gap's length: such moved instants wait in a heap until
    the walk has passed them, so instants still come out in order."""
    years = None if e.year.any else sorted(e.year.values())
    walls = _walls(e, _first_wall(since, zone))
    moved: list[datetime] = []  # moved instants not given yet, soonest first
    previous: datetime | None = None

    def given(start: datetime) -> Iterator[Window]:
        nonlocal previous
        if previous is None or start > previous:  # each instant fires once
            previous = start
            yield Window(start, start + timedelta(seconds=1))

    for _ in range(_MAX_CRON_STEPS):
        local = next(walls, None)
        if local is None:
            break
        if years is not None and local.year not in years:
            later = [y for y in years if y > local.year]
            if not later:
                break
            walls = _walls(e, datetime(later[0], 1, 1) - timedelta(seconds=1))
            continue
        start = _utc(local, zone)
        if _skipped(local, start, zone):
            heapq.heappush(moved, start)
            continue
        while moved and moved[0] <= start:
            yield from given(heapq.heappop(moved))
        if start > until:
            return
        yield from given(start)
    while moved and moved[0] <= until:
        yield from given(heapq.heappop(moved))


def _walls(e: TermExpression, after: datetime) -> Iterator[datetime]:
    """The expression's wall times strictly after `after` (naive), in order,
    years aside (the caller keeps to the expression's years)."""
    once = _once_a_year(e)
    if once is None:
        it = _croniter(_cron_text(e), after)
        while True:
            yield it.get_next(datetime)
    month, day, hour, minute, second = once
    for year in range(after.year, MAXYEAR + 1):
        try:
            wall = datetime(year, month, day, hour, minute, second)
        except ValueError:  # 29 February of a common year
            continue
        if wall > after:
            yield wall


@functools.lru_cache(maxsize=4096)
def _once_a_year(e: TermExpression) -> tuple[int, int, int, int, int] | None:
    """(month, day, hour, minute, second) of an expression naming one instant
    a year (a one-off "at" time, with its year): its walls need no search,
    and the scheduler meets such plans by the thousand."""
    if not e.day_of_week.any:
        return None
    fields = (e.month, e.day_of_month, e.hour, e.minute, e.second)
    values = [f.values() for f in fields]
    if any(f.any or len(v) != 1 or LAST in v for f, v in zip(fields, values, strict=True)):
        return None
    month, day, hour, minute, second = (next(iter(v)) for v in values)
    return month, day, hour, minute, second


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> croniter:
    return croniter(text, datetime(2000, 1, 1))


def _croniter(text: str, start: datetime) -> croniter:
    """A walk from `start`: parsing the text costs more than the first step,
    and the scheduler asks the same expressions again and again."""
    it = copy.copy(_parsed(text))  # the parsed fields are shared, never changed
    it.set_current(start, force=True)
    return it


def _first_wall(since: datetime, zone: ZoneInfo) -> datetime:
    """The wall time to walk from: `since`'s, or earlier by the gap when the
    clocks sprang forward within the day before, since the wall times the
    gap skipped land at or after `since` once moved."""
    wall = since.astimezone(zone)
    day_before = _plus(since, -timedelta(days=1)).astimezone(zone)
    gap = (wall.utcoffset() or timedelta()) - (day_before.utcoffset() or timedelta())
    return wall.replace(tzinfo=None) - max(gap, timedelta())


def _skipped(wall: datetime, instant: datetime, zone: ZoneInfo) -> bool:
    """Whether the zone skips this wall time (its instant reads otherwise)."""
    return instant.astimezone(zone).replace(tzinfo=None) != wall


def _cron_text(e: TermExpression) -> str:
    """The croniter form: minute hour day month weekday second (0 = Sunday).

    Each field is handed over as the values it means, never as written:
    croniter reads some spellings otherwise (`5-5/3` as every third)."""

    def values(f: Field, shown: Callable[[int], str] = str) -> str:
        if f.any:
            return "*"
        numbered = sorted(v for v in f.values() if v != LAST)
        last = ["L"] if LAST in f.values() else []
        return ",".join([*(shown(v) for v in numbered), *last])

    fields = (e.minute, e.hour, e.day_of_month, e.month)
    weekday = values(e.day_of_week, lambda v: str(v % 7))
    return " ".join([*(values(f) for f in fields), weekday, values(e.second)])


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
