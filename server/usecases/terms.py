"""Explaining a term expression to a merchant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain import calculators, term
from domain.errors import FieldViolation

_TICK = timedelta(microseconds=1)  # so that a fire time at `start` counts


@dataclass(frozen=True)
class Explanation:
    valid: bool
    violations: tuple[FieldViolation, ...] = ()
    normalized: str = ""
    kind: term.TermKind | None = None
    calculator: str = ""  # its registry name ("daily", "payday")
    description_en: str = ""
    description_zh: str = ""
    windows: tuple[term.Window, ...] = ()
    fire_times: tuple[datetime, ...] = field(default_factory=tuple)


def explain(
    expression: str, zone: str, start: datetime, anchor: datetime, count: int
) -> Explanation:
    """What an expression — a term expression, or a registered calculator
    such as `@payday 09:00` — means and when it is open and fires from
    `start` on.

    An invalid expression is an answer here (valid=False with its
    violations), not an error: checking expressions is what this is for."""
    try:
        parsed = calculators.parse(expression)
    except (term.TermExpressionError, calculators.CalculatorError) as exc:
        return Explanation(valid=False, violations=tuple(exc.violations))
    horizon = start + term.schedule.HORIZON
    windows = parsed.windows(start, horizon, zone, anchor, count)
    # Fire times are window starts; a window open at `start` fired before it.
    ahead = parsed.windows(start - _TICK, horizon, zone, anchor, count + 1)
    fires = [w.start for w in ahead if w.start >= start][:count]
    return Explanation(
        valid=True,
        normalized=parsed.format(),
        kind=parsed.expression.kind if isinstance(parsed, calculators.TermCalculator) else None,
        calculator=parsed.name,
        description_en=parsed.describe("en"),
        description_zh=parsed.describe("zh"),
        windows=tuple(windows),
        fire_times=tuple(fires),
    )
