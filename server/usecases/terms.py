"""Explaining a term expression to a merchant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain import term
from domain.errors import FieldViolation

_TICK = timedelta(microseconds=1)  # so that a fire time at `start` counts


@dataclass(frozen=True)
class Explanation:
    valid: bool
    violations: tuple[FieldViolation, ...] = ()
    normalized: str = ""
    kind: term.TermKind | None = None
    description_en: str = ""
    description_zh: str = ""
    windows: tuple[term.Window, ...] = ()
    fire_times: tuple[datetime, ...] = field(default_factory=tuple)


def explain(
    expression: str, zone: str, start: datetime, anchor: datetime, count: int
) -> Explanation:
    """What an expression means and when it is open and fires from `start` on.

    An invalid expression is an answer here (valid=False with its
    violations), not an error: checking expressions is what this is for."""
    try:
        parsed = term.parse(expression)
    except term.TermExpressionError as exc:
        return Explanation(valid=False, violations=exc.violations)
    windows = term.windows(parsed, start, start + term.schedule.HORIZON, zone, anchor, limit=count)
    fires = term.next_fire_times(parsed, start - _TICK, zone, count, anchor)
    return Explanation(
        valid=True,
        normalized=parsed.format(),
        kind=parsed.kind,
        description_en=term.describe(parsed, "en"),
        description_zh=term.describe(parsed, "zh"),
        windows=tuple(windows),
        fire_times=tuple(fires),
    )
