"""Term expressions against an independent implementation: croniter.

Random expressions (every field form), zones with one-hour and 30-minute
daylight-saving gaps, and starts near transitions, month ends and leap days.
For each, our next fire times must equal those of croniter's wall-time walk
given the documented daylight-saving rule (a wall time the zone skips moves
forward by the gap; a repeated one means its first occurrence), applied here
by hand from the zone's offsets.

croniter's own rule for aware times differs on purpose (it drops a skipped
wall time and fires a repeated one twice): where our answer differs from
croniter's aware walk, the difference must lie at a transition, and it is
counted as a documented difference, never a failure.

The spellings croniter reads otherwise are written for it the way it reads
them (docs/term-expressions.md, "croniter"): a weekday step counts from
Sunday 0 there, so stepped weekdays go over as lists; `a-a` and `a-a/n`
(which croniter reads as `*` and `*/n`) go over as `a`; a named month with a
step goes over as a number.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from domain import term
from domain.term.expression import TermExpression
from domain.term.fields import DAY_OF_WEEK, MONTH, Spec
from domain.term.schedule import HORIZON

CI = os.environ.get("CI") == "true"
EXAMPLES = 2500 if CI else 400
DIFFERENTIAL = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FIRES = 6
ZONES = [
    "UTC",
    "Asia/Shanghai",
    "America/New_York",  # one-hour gap in March, repeated hour in November
    "Europe/London",
    "Australia/Lord_Howe",  # a 30-minute gap and a 30-minute repeat
    "Asia/Kolkata",  # +05:30, no daylight saving
]
MAX_GAP = timedelta(hours=2)  # more than any gap of the zones above
SEEN: Counter[str] = Counter()


def _transitions(zone: str) -> list[datetime]:
    """The instants the zone's offset changes, 2024-2031, to the minute."""
    tz = ZoneInfo(zone)
    out = []
    at = datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while at < datetime(2032, 1, 1, tzinfo=UTC):
        if at.astimezone(tz).utcoffset() != (at + step).astimezone(tz).utcoffset():
            low, high = at, at + step
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = mid
                else:
                    high = mid
            out.append(high.replace(second=0, microsecond=0))
        at += step
    return out


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}


# -- expressions -------------------------------------------------------------


def _item(spec: Spec, names: bool) -> st.SearchStrategy[str]:
    low, high = spec.low, spec.high
    value = st.integers(low, high)
    named = (
        st.integers(0, len(spec.names) - 1).map(lambda i: spec.names[i])
        if names and spec.names
        else value.map(str)
    )
    ordered = st.tuples(value, value).map(lambda p: (min(p), max(p)))
    step = st.integers(1, max(1, (high - low) // 2 + 1))
    return st.one_of(
        value.map(str),
        named,
        ordered.map(lambda p: f"{p[0]}-{p[1]}"),
        st.tuples(ordered, step).map(lambda p: f"{p[0][0]}-{p[0][1]}/{p[1]}"),
        st.tuples(value, step).map(lambda p: f"{p[0]}/{p[1]}"),  # a/1 included
        st.tuples(value, step).map(lambda p: f"{p[0]}-{p[0]}/{p[1]}"),
        st.tuples(named, step).map(lambda p: f"{p[0]}/{p[1]}"),
        step.map(lambda n: f"*/{n}"),
    )


def _field(spec: Spec, *, star: bool = True, last: bool = False) -> st.SearchStrategy[str]:
    items = _item(spec, names=True)
    if last:
        items = st.one_of(items, st.just("L"))
    forms = [st.lists(items, min_size=1, max_size=3).map(",".join)]
    if star:
        forms.append(st.just("*"))
        forms.append(st.integers(1, (spec.high - spec.low) // 2 + 1).map(lambda n: f"*/{n}"))
    return st.one_of(*forms)


SECOND = Spec("second", 0, 59)
MINUTE = Spec("minute", 0, 59)
HOUR = Spec("hour", 0, 23)
DAY = Spec("day-of-month", 1, 31)
years = st.one_of(
    st.just("*"),
    st.integers(2024, 2032).map(str),
    st.tuples(st.integers(2024, 2032), st.integers(0, 3)).map(lambda p: f"{p[0]}-{p[0] + p[1]}"),
    st.lists(st.integers(2024, 2034), min_size=2, max_size=3, unique=True).map(
        lambda ys: ",".join(map(str, ys))
    ),
)


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    second = draw(st.one_of(st.just("0"), st.integers(0, 59).map(str), _field(SECOND, star=False)))
    minute = draw(_field(MINUTE))
    # Often the small hours, where the clocks change.
    hour = draw(st.one_of(_field(HOUR), st.sampled_from(["1", "2", "1-3", "2/1", "0-2/2"])))
    month = draw(_field(MONTH))
    if draw(st.booleans()):
        days = f"{draw(_field(DAY, last=True))} {month} ?"
    else:
        days = f"? {month} {draw(_field(DAY_OF_WEEK))}"
    return f"{second} {minute} {hour} {days} {draw(years)} 30"


@st.composite
def windowed_expressions(draw: st.DrawFn) -> str:
    hours = draw(st.tuples(st.integers(0, 23), st.integers(0, 23)))
    minutes = draw(st.tuples(st.integers(0, 59), st.integers(0, 59)))
    if draw(st.booleans()):  # a point in time
        clock = f"0 {minutes[0]} {hours[0]}"
    else:
        clock = f"0 {minutes[0]}-{minutes[1]} {hours[0]}-{hours[1]}"
    if draw(st.booleans()):
        clock = "* * *"  # the whole day
    month = draw(_field(MONTH))
    kind = draw(st.sampled_from([31, 32, 33]))
    if kind == 31:
        return f"{clock} * {month} ? {draw(years)} 31"
    if kind == 32:
        return f"{clock} ? {month} {draw(_field(DAY_OF_WEEK))} {draw(years)} 32"
    return f"{clock} {draw(_field(DAY, last=True))} {month} * {draw(years)} 33"


@st.composite
def starts(draw: st.DrawFn, zone: str) -> datetime:
    """A random instant, or one near a transition, a month end or 29 February."""
    tz = ZoneInfo(zone)
    near = draw(st.sampled_from(["any", "transition", "month_end", "leap_day"]))
    jitter = timedelta(seconds=draw(st.integers(-3 * 3600, 3 * 3600)))
    if near == "transition" and TRANSITIONS[zone]:
        return draw(st.sampled_from(TRANSITIONS[zone])) + jitter
    if near == "month_end":
        year, month = draw(st.integers(2024, 2030)), draw(st.integers(1, 12))
        first_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
        return first_next.astimezone(UTC) + jitter
    if near == "leap_day":
        return datetime(2028, draw(st.sampled_from([2, 3])), 1, tzinfo=tz).astimezone(UTC) + jitter
    return draw(
        st.datetimes(datetime(2024, 1, 1), datetime(2031, 12, 31), timezones=st.just(UTC))
    ).replace(microsecond=0)


# -- the croniter side ---------------------------------------------------------


def croniter_text(e: TermExpression, text: str) -> str:
    """The expression the way croniter reads it: minute hour day month weekday second."""
    second, minute, hour, day, month, weekday = text.split()[:6]
    if e.kind.has_daily_window:
        start = e.day_window.start
        second, minute, hour = str(start % 60), str(start // 60 % 60), str(start // 3600)
        day = day if e.kind is term.TermKind.MONTHLY else "*"
        weekday = weekday if e.kind is term.TermKind.WEEKLY else "*"
    return " ".join(
        [
            _for_croniter(minute, MINUTE),
            _for_croniter(hour, HOUR),
            _for_croniter(day, DAY),
            _for_croniter(month, MONTH),
            _weekday_for_croniter(weekday),
            _for_croniter(second, SECOND),
        ]
    )


def _for_croniter(field: str, spec: Spec) -> str:
    if field in ("*", "?"):
        return "*"
    out = []
    for item in field.split(","):
        body, _, step = item.partition("/")
        start, _, end = body.partition("-")
        if spec.names and start.upper() in spec.names and step:
            start = str(
                spec.low + spec.names.index(start.upper())
            )  # croniter: FEB/5 is all February
        if end and start == end:
            out.append(start)  # croniter reads 5-5 as * and 5-5/3 as */3
        elif step:
            out.append(f"{start}-{end}/{step}" if end else f"{start}/{step}")
        else:
            out.append(item)
    return ",".join(out)


def _weekday_for_croniter(field: str) -> str:
    """Weekdays are 1-7 from Monday here and 0-6 from Sunday there (7 is Sunday
    in both): stepped items go over as the days they mean."""
    if field in ("*", "?"):
        return "*"
    out = []
    for item in field.split(","):
        if "/" not in item:
            out.append(_for_croniter(item, DAY_OF_WEEK))
            continue
        body, _, step = item.partition("/")
        if body == "*":
            low, high = 1, 7
        else:
            first, _, last = body.partition("-")
            low = _weekday_number(first)
            high = _weekday_number(last) if last else 7
        out += [str(v % 7) for v in range(low, high + 1, int(step))]
    return ",".join(out)


def _weekday_number(text: str) -> int:
    names = DAY_OF_WEEK.names
    return names.index(text.upper()) + 1 if text.upper() in names else int(text)


def _walls(text: str, start: datetime, years: frozenset[int] | None) -> Iterator[datetime]:
    """croniter's naive wall times after `start`, in the allowed years."""
    it = croniter(text, start)
    while True:
        wall: datetime = it.get_next(datetime)
        if years is not None and wall.year not in years:
            later = [y for y in years if y > wall.year]
            if not later:
                return
            it = croniter(text, datetime(min(later), 1, 1) - timedelta(seconds=1))
            continue
        yield wall


def documented_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The documented meaning of a wall time, from the zone's two offsets."""
    offsets = {wall.replace(tzinfo=zone, fold=fold).utcoffset() for fold in (0, 1)}
    real = [
        (wall - off).replace(tzinfo=UTC)
        for off in offsets
        if off is not None
        and (wall - off).replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None) == wall
    ]
    if real:
        return min(real)  # a repeated wall time: its first occurrence
    # Skipped: read with the offset in force before the gap, which moves it
    # forward by the gap's length.
    before = wall.replace(tzinfo=zone, fold=0).utcoffset()
    assert before is not None
    return (wall - before).replace(tzinfo=UTC)


def oracle(e: TermExpression, text: str, after: datetime, zone: str) -> list[datetime]:
    """The first FIRES fire times after `after`: croniter's walls, the documented rule."""
    tz = ZoneInfo(zone)
    years = None if e.year.any else e.year.values()
    length = None
    if e.kind.has_daily_window:
        length = timedelta(seconds=e.day_window.end - e.day_window.start)
    # Wall times a gap skipped land after `after` once moved: walk from
    # before the gap when `after` is just past one.
    local = after.astimezone(tz).replace(tzinfo=None)
    walk_from = local - (MAX_GAP if _near_transition(after, zone, MAX_GAP) else timedelta(0))
    walk_from -= timedelta(days=1) if length else timedelta(seconds=1)
    horizon = after + HORIZON
    found: set[datetime] = set()
    for steps, wall in enumerate(_walls(croniter_text(e, text), walk_from, years)):
        assert steps < 200_000, "the oracle walked too far"
        start = documented_instant(wall, tz)
        if start > horizon + MAX_GAP:
            break
        if length is not None and documented_instant(wall + length, tz) <= start:
            continue  # a window the gap made empty does not open
        if after < start <= horizon:
            found.add(start)
        ahead = sorted(found)
        if len(ahead) >= FIRES and start > ahead[FIRES - 1] + MAX_GAP:
            break
    return sorted(found)[:FIRES]


def croniter_aware(e: TermExpression, text: str, after: datetime, zone: str) -> list[datetime]:
    """croniter's own answer for aware times (its own daylight-saving rule)."""
    tz = ZoneInfo(zone)
    years = None if e.year.any else e.year.values()
    it = croniter(croniter_text(e, text), after.astimezone(tz))
    out: list[datetime] = []
    horizon = after + HORIZON
    for _ in range(100_000):
        if len(out) >= FIRES:
            break
        fire: datetime = it.get_next(datetime)
        if years is not None and fire.year not in years:
            later = [y for y in years if y > fire.year]
            if not later:
                break
            it = croniter(
                croniter_text(e, text), datetime(min(later), 1, 1, tzinfo=tz) - timedelta(seconds=1)
            )
            continue
        if fire.astimezone(UTC) > horizon:
            break
        out.append(fire.astimezone(UTC))
    return out


def _near_transition(at: datetime, zone: str, within: timedelta) -> bool:
    return any(abs(t - at) <= within for t in TRANSITIONS[zone])


def _parsed(text: str) -> TermExpression:
    try:
        return term.parse(text)
    except term.TermExpressionError:
        assume(False)  # a combination that never occurs (31 February)
        raise


@st.composite
def once_a_year(draw: st.DrawFn) -> str:
    """One instant a year ("at"), which the schedule computes without a
    search: leap days, hours that transitions skip or repeat, any year form."""
    month, day = draw(st.sampled_from([(2, 29), (2, 28), (3, 31), (11, 1), (12, 31)]))
    if draw(st.booleans()):
        month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    hour = draw(st.one_of(st.integers(0, 23), st.sampled_from([1, 2, 3])))
    second, minute = draw(st.integers(0, 59)), draw(st.sampled_from([0, 30, 59]))
    return f"{second} {minute} {hour} {day} {month} ? {draw(years)} 30"


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    text = draw(st.one_of(cron_expressions(), windowed_expressions(), once_a_year()))
    return text, zone, draw(starts(zone))


@DIFFERENTIAL
@given(st.sampled_from(ZONES).flatmap(lambda z: st.tuples(once_a_year(), st.just(z), starts(z))))
def test_one_instant_a_year_agrees_with_croniter(case: tuple[str, str, datetime]) -> None:
    text, zone, after = case
    e = _parsed(text)
    assert term.next_fire_times(e, after, zone, FIRES) == oracle(e, text, after, zone), text


@DIFFERENTIAL
@given(cases())
def test_fire_times_agree_with_croniter(case: tuple[str, str, datetime]) -> None:
    text, zone, after = case
    e = _parsed(text)
    ours = term.next_fire_times(e, after, zone, FIRES)
    assert ours == oracle(e, text, after, zone), text
    SEEN["expressions"] += 1
    theirs = croniter_aware(e, text, after, zone)
    if e.kind is term.TermKind.CRON and ours != theirs:
        # croniter drops skipped wall times and repeats repeated ones: any
        # instant one side has and the other lacks lies at a transition.
        # Beyond the shorter list's last fire, the other list is merely longer.
        lasts = [fires[-1] for fires in (ours, theirs) if fires]
        limit = min(lasts) if len(lasts) == 2 else max(lasts)
        for instant in set(ours) ^ set(theirs):
            if instant <= limit:
                assert _near_transition(instant, zone, timedelta(hours=3)), (text, instant)
        SEEN["documented DST differences"] += 1
        event("croniter's own DST rule differs (documented)")


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\ncroniter differential: {dict(SEEN)}")
