"""The fields of a term expression and their grammar.

A field is `*`, `?` (no specific value: day-of-month / day-of-week), or a
comma-separated list of items: `v`, `a-b`, `a/step`, `a-b/step`, `*/step`,
and `L` (the last day of the month, day-of-month only). Month and weekday
names (JAN..DEC, MON..SUN) are accepted and written back as numbers.

An item means the values it lists, whatever its spelling: `a/n` runs from a
to the top of the field (Quartz), so `a/1` is `a-top`; a range with equal
ends is its one value, step or not (`5-5/3` is 5); `*/n` inside a list is
`low-high/n`. Each item is kept in the one form that says this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from domain.errors import FieldViolation


@dataclass(frozen=True)
class Spec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


SECOND = Spec("second", 0, 59)
MINUTE = Spec("minute", 0, 59)
HOUR = Spec("hour", 0, 23)
DAY_OF_MONTH = Spec("day-of-month", 1, 31)
MONTH = Spec(
    "month",
    1,
    12,
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
)
# Day-of-week 1 is Monday and 7 is Sunday (the seed's numbering, not Quartz's).
DAY_OF_WEEK = Spec("day-of-week", 1, 7, ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"))
YEAR = Spec("year", 1970, 2199)
SPECS = (SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR)
# For a delay (type 3) the day-of-month field counts days; for the birthday
# types (41-43) it counts the days ahead.
DELAY_DAYS = Spec("day-of-month", 0, 3650)
DAYS_AHEAD = Spec("day-of-month", 0, 31)
LAST = -1  # the value of `L`


@dataclass(frozen=True)
class Item:
    """`start`, `start-end`, or either with `/step`; `start == LAST` is `L`."""

    start: int
    end: int
    step: int = 1
    is_range: bool = False  # written as a-b (even a-a), not a single value

    def format(self) -> str:
        if self.start == LAST:
            return "L"
        if self.step != 1:
            # `a/n` runs to the field's top, as in Quartz; `a-b/n` stops at b.
            return (
                f"{self.start}-{self.end}/{self.step}"
                if self.is_range
                else f"{self.start}/{self.step}"
            )
        if self.end != self.start:
            return f"{self.start}-{self.end}"
        return str(self.start)

    def values(self) -> range:
        return range(self.start, self.end + 1, self.step)


@dataclass(frozen=True)
class Field:
    """A parsed field. `any` is `*` (or `?`); otherwise `items` (never empty)."""

    spec: Spec
    any: bool = False
    items: tuple[Item, ...] = ()
    position: int = 0  # 1-based field number, for messages
    column: int = 0  # 1-based character where the field starts
    star_step: int = 0  # `*/n`: every n-th value of the whole range

    def format(self) -> str:
        if self.star_step:
            return f"*/{self.star_step}"
        if self.any:
            return "*"
        return ",".join(item.format() for item in self.items)

    @property
    def single(self) -> int | None:
        """The value of a field written as one plain value, else None."""
        if len(self.items) == 1 and not self.items[0].is_range and self.items[0].step == 1:
            return self.items[0].start
        return None

    def values(self) -> frozenset[int]:
        """Every value the field allows (LAST included as -1)."""
        if self.any:
            return frozenset(range(self.spec.low, self.spec.high + 1))
        if self.star_step:
            return frozenset(range(self.spec.low, self.spec.high + 1, self.star_step))
        out: set[int] = set()
        for item in self.items:
            out.update([LAST] if item.start == LAST else item.values())
        return frozenset(out)

    def where(self) -> str:
        return f"field {self.position} at character {self.column}"


class FieldError(Exception):
    def __init__(self, violation: FieldViolation) -> None:
        super().__init__(violation.description)
        self.violation = violation


Fail = Callable[[str], FieldError]


def parse_field(
    text: str, spec: Spec, position: int, column: int, *, start_end: bool = False
) -> Field:
    """One field, or FieldError naming the field, its position and what was expected.

    With `start_end`, `a-b` is a start and an end (a window or a period) and
    may run backwards (22-6 overnight, 30-2 across months); otherwise it is
    a set of values and must run forwards."""
    where = f"field {position} at character {column}"

    def fail(message: str) -> FieldError:
        return FieldError(FieldViolation(spec.name, f"{message} ({where})"))

    if text in ("*", "?"):
        if text == "?" and spec not in (DAY_OF_MONTH, DAY_OF_WEEK):
            raise fail(f"{spec.name}: '?' is only for day-of-month and day-of-week")
        return Field(spec, any=True, position=position, column=column)
    if text.startswith("*/"):
        step = _number(text[2:], spec, fail, what="step")
        if step < 1 or step > spec.high - spec.low + 1:
            raise fail(f"{spec.name} step */{step}: must be 1-{spec.high - spec.low + 1}")
        return Field(spec, position=position, column=column, star_step=step)
    items = []
    for part in text.split(","):
        if not part:
            raise fail(f"{spec.name} {text!r}: empty item in the list")
        item = _item(part, spec, fail)
        if not start_end and item.end < item.start and item.start != LAST:
            raise fail(
                f"{spec.name} range {part}: {item.start} is after {item.end}; "
                f"write it as {item.end}-{item.start} or as a list"
            )
        items.append(item)
    # Sorted, with L (the last day) after the numbered days.
    unique = tuple(
        sorted(set(items), key=lambda i: (i.start == LAST, i.start, i.end, i.step, i.is_range))
    )
    return Field(spec, items=unique, position=position, column=column)


def _item(part: str, spec: Spec, fail: Fail) -> Item:
    body, _, step_text = part.partition("/")
    step = 1
    if step_text or part.endswith("/"):
        step = _number(step_text, spec, fail, what="step")
        if step < 1:
            raise fail(f"{spec.name} {part}: the step must be at least 1")
    if body == "*":
        if not step_text:
            raise fail(f"{spec.name} {part}: '*' stands alone; in a list write */n")
        return Item(spec.low, spec.high, step, is_range=True)
    if body.upper() == "L":
        if spec is not DAY_OF_MONTH:
            raise fail(f"{spec.name} {part}: 'L' (last day) is only for day-of-month")
        if step != 1:
            raise fail(f"{spec.name} {part}: 'L' takes no step")
        return Item(LAST, LAST)
    start_text, dash, end_text = body.partition("-")
    start = _value(start_text, spec, fail, part)
    end = _value(end_text, spec, fail, part) if dash else start
    if step_text and not dash:
        end = spec.high  # `a/n`: from a to the top of the field, every n (Quartz)
    if start == end:
        return Item(start, start)  # `a-a`, `a-a/n`: the value a, one form
    if step == 1:
        return Item(start, end, is_range=True)  # `a/1` is `a-top`
    return Item(start, end, step, is_range=bool(dash))


def _value(text: str, spec: Spec, fail: Fail, part: str) -> int:
    upper = text.upper()
    if spec.names and upper in spec.names:
        return spec.low + spec.names.index(upper)
    if not _digits(text):
        expected = f"a number {spec.low}-{spec.high}"
        if spec.names:
            expected += f" or a name {spec.names[0]}-{spec.names[-1]}"
        raise fail(f"{spec.name} {part}: {text!r} is not {expected}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        kind = "range" if "-" in part else "value"
        raise fail(f"{spec.name} {kind} {part}: {value} is out of {spec.low}-{spec.high}")
    return value


def _number(text: str, spec: Spec, fail: Fail, what: str) -> int:
    if not _digits(text) or len(text) > 4:
        raise fail(f"{spec.name}: {what} {text!r} is not a whole number")
    return int(text)


def _digits(text: str) -> bool:
    # ASCII only: str.isdigit() also accepts "²" and "٣", which int() refuses or misreads.
    return text.isascii() and text.isdigit()
