"""Mutated and random expressions: only the component's own validation
error may ever come out, and whatever parses can be evaluated."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import term
from tests.unit.test_term_properties import ZONES, expressions

CI = os.environ.get("CI") == "true"
FUZZ = settings(
    max_examples=1500 if CI else 500,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.too_slow],
)
SEEDS = [
    "* * * * * 1,3 * 32",
    "* 20-30 8-20 * * ? 31",
    "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2",
    "0 */15 9-18 * * ? * 30",
    "* * * 1,15,L * * * 33",
    "0 30 2 1 * * * 3",
    "0 0 9 3 * * * 41",
]
PIECES = st.sampled_from(
    [
        "*",
        "?",
        "L",
        "-",
        ",",
        "/",
        "0",
        "7",
        "60",
        "-1",
        "2199",
        "99999999",
        "MON",
        "JAN",
        "",
        " ",
        "²",
        "３",
        "*/0",
        "1-",
        "-5",
        ",,",
        "L/2",
        "5-1",
        "DEC-JAN",
        "FRI-MON",
        "2030-2020",
        "1/0",
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    base = draw(st.one_of(st.sampled_from(SEEDS), expressions()))
    fields = base.split()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["swap", "drop", "duplicate", "replace", "char", "insert"]))
        if not fields:
            fields = [draw(PIECES)]
        i = draw(st.integers(0, len(fields) - 1))
        j = draw(st.integers(0, len(fields) - 1))
        if op == "swap":
            fields[i], fields[j] = fields[j], fields[i]
        elif op == "drop":
            del fields[i]
        elif op == "duplicate":
            fields.insert(i, fields[i])
        elif op == "replace":
            fields[i] = draw(PIECES)
        elif op == "char" and fields[i]:
            k = draw(st.integers(0, len(fields[i]) - 1))
            char = draw(st.one_of(st.characters(), st.sampled_from("²３٣\u00a0\t\n-/,*?")))
            fields[i] = fields[i][:k] + char + fields[i][k + 1 :]
        else:
            fields[i] = fields[i] + draw(PIECES)
    return " ".join(fields)


def _exercise(text: str, zone: str, at: datetime) -> None:
    try:
        e = term.parse(text)
    except term.TermExpressionError as exc:
        assert exc.violations and all(v.field and v.description for v in exc.violations)
        return
    assert term.parse(e.format()).format() == e.format()
    term.describe(e, "en")
    term.describe(e, "zh")
    term.next_fire_times(e, at, zone, 3, anchor=at)
    term.windows(e, at, at + timedelta(days=40), zone, anchor=at)
    term.is_active(e, at, zone, anchor=at)


INSTANT = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2190, 1, 1), timezones=st.just(UTC)
)


@FUZZ
@given(mutated(), ZONES, INSTANT)
def test_mutated_expressions_fail_only_with_validation_errors(
    text: str, zone: str, at: datetime
) -> None:
    _exercise(text, zone, at)


@FUZZ
@given(st.text(max_size=60), ZONES, INSTANT)
def test_random_text_fails_only_with_validation_errors(text: str, zone: str, at: datetime) -> None:
    _exercise(text, zone, at)
