"""Walking the windows of term expressions page by page, and meeting
several walks: the machinery under the plan calendar (domain/plan_calendar.py),
which knows nothing of plans.

Every walk is bounded: windows are read a page at a time (small first, then
larger), up to a horizon, and at most `MAX_STEPS` windows per question; a
question that needs more raises `TooFar` with the instant it got to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from domain.term import Window
from domain.zones import zone as zone_of

TICK = timedelta(microseconds=1)
_FIRST_PAGE, _PAGE = 4, 256  # windows read at once: first, and at most
MAX_STEPS = 50_000  # windows looked at per question
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


class TooFar(Exception):
    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.at = at


class WindowSource(Protocol):
    """What computes a notion's windows (domain.calculators.Calculator)."""

    def windows(
        self, start: datetime, end: datetime, zone: str, anchor: datetime | None, limit: int
    ) -> list[Window]: ...


class Remembered:
    """A notion's windows, each question computed once: deciding one step
    asks the same pages several times (the next fire, the next window, the
    end), and a page of cron instants is not cheap. Bounded: a calendar
    that asks many different questions forgets and starts over."""

    _KEEP = 64

    def __init__(self, source: WindowSource) -> None:
        self._source = source
        self._seen: dict[tuple[datetime, datetime, str, datetime | None, int], list[Window]] = {}

    def windows(
        self, start: datetime, end: datetime, zone: str, anchor: datetime | None, limit: int
    ) -> list[Window]:
        key = (start, end, zone, anchor, limit)
        found = self._seen.get(key)
        if found is None:
            if len(self._seen) >= self._KEEP:
                self._seen.clear()
            found = self._seen[key] = self._source.windows(start, end, zone, anchor, limit)
        return found


class WindowRun:
    """The windows of one notion that end after a moving instant, read a
    page at a time; a notion left unset is one window that never closes."""

    def __init__(
        self,
        e: WindowSource | None,
        zone: str,
        anchor: datetime,
        start: datetime,
        horizon: datetime,
    ) -> None:
        self._e, self._zone, self._anchor, self._horizon = e, zone, anchor, horizon
        self._page: list[Window] = []
        self._full = False
        self._i = 0
        # Most questions need a window or two: pages start small and grow.
        self._size = _FIRST_PAGE
        self._load(start)

    def _load(self, start: datetime) -> None:
        if self._e is None:
            self._page, self._full = [Window(_EARLIEST, None)], False
        elif start >= self._horizon:
            self._page, self._full = [], False
        else:
            self._page = self._e.windows(start, self._horizon, self._zone, self._anchor, self._size)
            self._full = len(self._page) >= self._size
            self._size = min(self._size * 4, _PAGE)
        self._i = 0

    def past(self, t: datetime) -> Window | None:
        """The first window that ends after `t`, or None."""
        for _ in range(MAX_STEPS):
            if self._i >= len(self._page):
                if not self._full:
                    return None
                last = self._page[-1]
                self._load(max(t, last.start + TICK))
                continue
            window = self._page[self._i]
            if window.end is None or window.end > t:
                return window
            tail = self._page[-1]
            if self._full and tail.end is not None and tail.end <= t:
                self._load(t)  # jump: the whole page is behind
            else:
                self._i += 1
        raise TooFar(t)

    def first(self, wanted: Callable[[Window], bool] = lambda _: True) -> Window | None:
        """The first window from here on that `wanted` accepts."""
        t = _EARLIEST
        for _ in range(MAX_STEPS):
            window = self.past(t)
            if window is None or wanted(window):
                return window
            if window.end is None:
                return None
            t = window.end  # a notion's windows never overlap
        raise TooFar(t)


class Windows(Protocol):
    """Anything that walks windows in order: a WindowRun, or windows derived
    from one (the plan calendar's effect spans)."""

    def past(self, t: datetime) -> Window | None: ...


def meet_with(runs: Sequence[Windows], start: datetime) -> Iterator[tuple[Window, Window]]:
    """The pieces where every run has a window, in order, from those ending
    after `start`; each with the first run's window it lies in."""
    t = start
    for _ in range(MAX_STEPS):
        windows = [r.past(t) for r in runs]
        if any(w is None for w in windows):
            return
        found = [w for w in windows if w is not None]
        low = max(w.start for w in found)
        ends = [w.end for w in found if w.end is not None]
        high = min(ends) if ends else None
        if high is None or low < high:
            yield Window(low, high), found[0]
            if high is None:
                return
            t = high
        else:
            t = low  # no overlap: every run moves to where the latest starts
    raise TooFar(t)


def meet(runs: Sequence[Windows], start: datetime) -> Iterator[Window]:
    for piece, _ in meet_with(runs, start):
        yield piece


def is_point(window: Window) -> bool:
    """An instant: a window of one second (cron instants, a point time of day)."""
    return window.end is not None and window.end - window.start <= timedelta(seconds=1)


def local_date(at: datetime, zone: str) -> date:
    return at.astimezone(zone_of(zone)).date()


def midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time()).replace(tzinfo=zone_of(zone)).astimezone(UTC)


def day_of(at: datetime, zone: str) -> Window:
    """The local calendar day of `at` in `zone`, as [midnight, next midnight)."""
    day = local_date(at, zone)
    return Window(midnight(day, zone), midnight(day + timedelta(days=1), zone))


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
