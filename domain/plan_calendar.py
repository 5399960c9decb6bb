"""One calendar for a plan's time: the single answer to "what does this plan
do when", asked by the scheduler, runs, preview, the shoppers' calls and the
lifecycle alike.

A plan's time is three notions (the article's 生效时间, 运营期限, 执行时间),
each a term expression; a notion left unset does not restrict:

- in effect: inside a window of the effective time;
- inside the term: inside a window of the operation term;
- executing: inside an *effect window* of the execution time.

Every window is half-open, [start, end). The rules (docs/time.md):

- **Fires.** An execution instant counts when it lies inside effective ∩
  term. An execution window fires once, at the first instant of its part
  inside effective ∩ term (a window the effective time or the term clips
  fires where the clipped part starts; one split in two fires once). An
  execution fire that does not count is skipped, with its reason.
- **Effect windows.** The effects of an instant that counts hold for its
  local calendar day in the plan's zone (member day at 09:00 on the 8th:
  the whole 8th); a window's hold for its part inside effective ∩ term;
  "immediately" and "after a delay" are instants of the day they fire on;
  a birthday kind's hold, per member, for the member's birthday day, week
  or month. Effects show only inside effective ∩ term.
- **The end.** When no fire lies ahead, the plan is over once the effect
  window of its last fire has closed.
- **Event triggers.** An execution time `@on EVENT …` has no fires: each
  member's event makes that member's due time (domain/triggers.py), which
  acts only inside effective ∩ term. Such a plan ends when effective ∩
  term has nothing ahead.

Every walk is bounded (domain/windows.py): windows are read page by page,
up to the term language's horizon (8 years), and at most a set number of
windows per answer.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from domain import calculators
from domain.audience import BirthdayScope
from domain.calculators import Calculator
from domain.plan import Plan, PlanTime
from domain.term import Window
from domain.term.schedule import HORIZON
from domain.windows import TICK as TICK  # the calendar's "just before": public
from domain.windows import (
    Remembered,
    TooFar,
    WindowRun,
    day_of,
    earliest,
    is_point,
    local_date,
    meet,
    meet_with,
    midnight,
)


class SkipReason(enum.Enum):
    """Why an execution fire did not run."""

    NOT_IN_EFFECT = "NOT_IN_EFFECT"  # outside every window of the effective time
    OUTSIDE_TERM = "OUTSIDE_TERM"  # in effect, but outside the operation term
    MISSED = "MISSED"  # the platform was down; the missed-fire policy skipped it


class EndReason(enum.Enum):
    """Why nothing of the plan's time lies ahead."""

    TERM_OVER = "TERM_OVER"
    EFFECTIVE_TIME_OVER = "EFFECTIVE_TIME_OVER"
    ONE_OFF_FIRED = "ONE_OFF_FIRED"  # immediately, after a delay, a fixed period
    EXECUTION_TIME_OVER = "EXECUTION_TIME_OVER"  # e.g. its year field is past
    NO_FIRE_AHEAD = "NO_FIRE_AHEAD"  # fires ahead never meet effective ∩ term


@dataclass(frozen=True)
class Fire:
    at: datetime


@dataclass(frozen=True)
class Skip:
    """The execution fire at `at` (and any up to `resume`) does not count;
    the next one that counts is at `resume`."""

    at: datetime
    reason: SkipReason
    resume: datetime


@dataclass(frozen=True)
class End:
    """Nothing lies ahead: the plan is over at `at`."""

    at: datetime
    reason: EndReason


@dataclass(frozen=True)
class Wait:
    """Nothing decided before `at` within the bounded walk: ask again then."""

    at: datetime


Decision = Fire | Skip | End | Wait


@dataclass(frozen=True)
class Answer:
    value: bool
    until: datetime | None  # the answer holds for instants before this (None: for ever)

    def holds_at(self, at: datetime) -> bool:
        return self.until is None or at < self.until


@dataclass(frozen=True)
class Effect:
    """Whether the plan's effects hold at an instant, and until when."""

    applies: bool
    # The effect window (clipped to effective ∩ term) it applies in; when it
    # does not apply, the next one (None: none within the horizon).
    window: Window | None
    until: datetime | None  # the answer holds for instants before this
    # Birthday kinds: it applies, per member, to members whose birthday
    # day / week / month contains the instant (the audience system knows);
    # `window` is then the member's period, or the next opening of
    # effective ∩ term.
    birthday: BirthdayScope | None = None

    def holds_at(self, at: datetime) -> bool:
        return self.until is None or at < self.until


class PlanCalendar:
    def __init__(self, time: PlanTime, zone: str, anchor: datetime) -> None:
        """`anchor` is what "immediately" and "after a delay" count from: the
        publish time (or now, for a plan not yet published)."""
        self.zone = zone
        self.anchor = anchor
        self._effective = _parse(time.effective)
        self._term = _parse(time.term)
        self.execution = _parse(time.execution)
        self._remembered = {
            id(n): Remembered(n) for n in (self._effective, self._term, self.execution) if n
        }

    @classmethod
    def of(cls, plan: Plan, now: datetime) -> PlanCalendar:
        return cls(plan.spec.time, plan.spec.time_zone, plan.publish_time or now)

    # -- the three notions ------------------------------------------------

    def in_effect(self, at: datetime) -> Answer:
        return self._inside(self._effective, at)

    def in_term(self, at: datetime) -> Answer:
        return self._inside(self._term, at)

    def allowed(self, at: datetime) -> bool:
        """In effect and inside the term."""
        return self.in_effect(at).value and self.in_term(at).value

    def executing(self, at: datetime) -> Effect:
        """Whether the plan's effects hold at `at`: inside effective ∩ term
        and an effect window of the execution time."""
        x = self.execution
        if x is None:
            return Effect(False, None, None)
        horizon = at + HORIZON
        try:
            if x.birthday is not None:
                scope = x.birthday.scope
                piece = next(self.meet([self._effective, self._term], at, horizon), None)
                if piece is None or piece.start > at:
                    return Effect(False, piece, piece.start if piece else horizon, scope)
                period = self._period(scope, local_date(at, self.zone))
                window = Window(period.start, earliest(period.end, piece.end))
                return Effect(True, window, window.end, scope)
            runs = [self._run(n, at, horizon) for n in (self._effective, self._term)]
            piece = next(meet([*runs, _Spans(self, at, horizon)], at), None)
        except TooFar as far:
            return Effect(False, None, far.at)
        if piece is None:
            return Effect(False, None, horizon)
        if piece.start <= at:
            return Effect(True, piece, piece.end)
        return Effect(False, piece, piece.start)

    def effect_window_of(self, fire: datetime) -> Window | None:
        """The effect window a fire's grants are valid for: the effect window
        of the fire itself; for a birthday kind, the birthday period of the
        members the run selects (the run's date plus the days ahead), kept
        whole even where the term ends first — the gift was given in term."""
        x = self.execution
        if x is None:
            return None
        if x.birthday is not None:
            local = local_date(fire, self.zone) + timedelta(days=x.birthday.days_ahead)
            return self._period(x.birthday.scope, local)
        effect = self.executing(fire)
        return effect.window if effect.applies else None

    # -- the scheduler's decisions ----------------------------------------

    def fires(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fires that count, strictly after `after`."""
        out: list[datetime] = []
        if count <= 0:
            return out
        try:
            for fire, _ in self._counted(after):
                out.append(fire)
                if len(out) >= count:
                    break
        except TooFar:
            pass  # what the bounded walk found
        return out

    def latest_fire(self, after: datetime, until: datetime) -> datetime | None:
        """The latest fire that counts in (after, until]. Looked for back from
        `until` in growing spans, so a dense schedule missed for days costs
        a few walks, not one through every fire since `after`."""
        span = timedelta(minutes=1)
        while True:
            start = max(after, until - span)
            latest = None
            try:
                for fire, _ in self._counted(start):
                    if fire > until:
                        break
                    latest = fire
            except TooFar:
                pass  # the latest the bounded walk found
            if latest is not None or start == after:
                return latest
            span *= 4

    def next_decision(self, after: datetime) -> Decision:
        """What happens first strictly after `after`: a fire, a skipped fire
        (with the next that counts), or the end."""
        x = self.execution
        if x is None:
            return End(after, EndReason.NO_FIRE_AHEAD)
        if x.trigger is not None:
            return self._while_allowed(after)
        try:
            counted = next(self._counted(after), None)
            upcoming = self._run(x, after, after + HORIZON).first(lambda w: w.start > after)
            if counted is not None:
                fire, window = counted
                if upcoming is None or fire < upcoming.start or window.start == upcoming.start:
                    return Fire(fire)
                return Skip(upcoming.start, self._skip_reason(upcoming), fire)
            return End(self._end_time(after), self._end_reason(after))
        except TooFar as far:
            return Wait(max(far.at, after + TICK))

    def _while_allowed(self, after: datetime) -> Decision:
        """For a plan members' events fire: nothing to fire by the calendar;
        it waits while effective ∩ term lies ahead, and ends when none does."""
        try:
            piece = next(self.meet([self._effective, self._term], after, after + HORIZON), None)
        except TooFar as far:
            return Wait(max(far.at, after + TICK))
        if piece is None:
            term = self._term
            over = term is not None and self._run(term, after, after + HORIZON).first() is None
            return End(after, EndReason.TERM_OVER if over else EndReason.EFFECTIVE_TIME_OVER)
        return Wait(piece.end if piece.end is not None and piece.end > after else after + HORIZON)

    # -- inside -----------------------------------------------------------

    def _inside(self, e: Calculator | None, at: datetime) -> Answer:
        if e is None:
            return Answer(True, None)
        nearby = self._source(e).windows(at, at + HORIZON, self.zone, self.anchor, 2)
        inside = next((w for w in nearby if w.contains(at)), None)
        if inside is not None:
            return Answer(True, inside.end)
        later = next((w.start for w in nearby if w.start > at), None)
        return Answer(False, later)

    def _counted(self, after: datetime) -> Iterator[tuple[datetime, Window]]:
        """Fires that count after `after`, each with its execution window."""
        x = self.execution
        if x is None:
            return
        horizon = after + HORIZON
        # A window open at `after` may have fired already: start from its start.
        open_at = self._run(x, after, horizon).first()
        start = min(after, open_at.start) if open_at is not None else after
        runs = [self._run(n, start, horizon) for n in (x, self._effective, self._term)]
        last: datetime | None = None  # start of the window whose first part was seen
        for piece, window in meet_with(runs, start):
            if window.start == last:
                continue  # a window fires once, at its first part
            last = window.start
            if is_point(window) and piece.start != window.start:
                continue  # an instant counts only when it lies inside
            if piece.start > after:
                yield piece.start, window

    def _skip_reason(self, window: Window) -> SkipReason:
        if self._effective is None:
            return SkipReason.OUTSIDE_TERM
        end = window.end or window.start + TICK
        meets = self._source(self._effective).windows(window.start, end, self.zone, self.anchor, 1)
        return SkipReason.OUTSIDE_TERM if meets else SkipReason.NOT_IN_EFFECT

    def _end_reason(self, after: datetime) -> EndReason:
        """Which notion leaves nothing ahead, looked at from the execution
        time's next fire (whether it counts or not)."""
        x = self.execution
        assert x is not None
        horizon = after + HORIZON
        upcoming = self._run(x, after, horizon).first(lambda w: w.start > after)
        if upcoming is None:
            if x.one_off:
                fired = self.fires(self.anchor - TICK, 1)
                return EndReason.ONE_OFF_FIRED if fired else EndReason.NO_FIRE_AHEAD
            return EndReason.EXECUTION_TIME_OVER
        at = upcoming.start
        if self._term is not None and self._run(self._term, at, horizon).first() is None:
            return EndReason.TERM_OVER
        effective = self._effective
        if effective is not None and self._run(effective, at, horizon).first() is None:
            return EndReason.EFFECTIVE_TIME_OVER
        return EndReason.NO_FIRE_AHEAD

    def _end_time(self, after: datetime) -> datetime:
        """When the effects of what fired last are over (the end of the
        effect window at `after`, or later for birthdays ahead)."""
        x = self.execution
        assert x is not None
        if x.birthday is not None and self.allowed(after):
            window = self.effect_window_of(after)
            piece = next(self.meet([self._effective, self._term], after, after + HORIZON), None)
            ends = [e for e in (window.end if window else None, piece.end if piece else None) if e]
            return max(after, min(ends)) if ends else after
        effect = self.executing(after)
        if effect.applies and effect.window is not None and effect.window.end is not None:
            return max(after, effect.window.end)
        return after

    # -- building blocks --------------------------------------------------

    def _source(self, e: Calculator) -> Remembered:
        return self._remembered[id(e)]

    def _run(self, e: Calculator | None, start: datetime, horizon: datetime) -> WindowRun:
        return WindowRun(e and self._source(e), self.zone, self.anchor, start, horizon)

    def meet(
        self, notions: Sequence[Calculator | None], start: datetime, horizon: datetime
    ) -> Iterator[Window]:
        return meet([self._run(n, start, horizon) for n in notions], start)

    def _period(self, scope: BirthdayScope, day: date) -> Window:
        """The local day, Monday-Sunday week or calendar month of `day`."""
        if scope is BirthdayScope.DAY:
            first, last = day, day + timedelta(days=1)
        elif scope is BirthdayScope.WEEK:
            first = day - timedelta(days=day.weekday())
            last = first + timedelta(days=7)
        else:
            first = day.replace(day=1)
            last = (first + timedelta(days=32)).replace(day=1)
        return Window(midnight(first, self.zone), midnight(last, self.zone))


class _Spans:
    """The effect spans of an execution time that is not a birthday kind:
    the local day of each instant that counts, or each window itself (the
    meet with effective ∩ term keeps the windows' parts that count); the day
    a one-off ("immediately", "after a delay") fires on."""

    def __init__(self, calendar: PlanCalendar, start: datetime, horizon: datetime) -> None:
        self._calendar = calendar
        x = calendar.execution
        assert x is not None
        self._x = x
        self._windows = None if x.point else calendar._run(x, start, horizon)
        self._one_off: Window | None = None
        if x.open_ended:
            fired = calendar.fires(calendar.anchor - TICK, 1)
            self._one_off = day_of(fired[0], calendar.zone) if fired else None

    def past(self, t: datetime) -> Window | None:
        if self._x.open_ended:
            one = self._one_off
            return one if one is not None and (one.end is None or one.end > t) else None
        if self._windows is not None:
            return self._windows.past(t)
        # The first instant that counts from the start of t's day: its day.
        day = day_of(t, self._calendar.zone)
        counted = next(self._calendar._counted(day.start - TICK), None)
        return None if counted is None else day_of(counted[0], self._calendar.zone)


def _parse(text: str) -> Calculator | None:
    return calculators.parse(text) if text else None
