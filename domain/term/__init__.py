"""Term expressions (期限表达式): the seed's extended-cron time language.

    second minute hour day-of-month month day-of-week [year] type

One component serves the three time notions of a plan (effective time,
operation term, execution time). `parse` checks an expression; the result
answers "is it active at t", "which windows meet [from, to)" and "when does
it fire next" in a given IANA zone, and describes itself in English and
Chinese. docs/term-expressions.md has the type codes and the rules.
"""

from domain.term import schedule
from domain.term.describe import describe
from domain.term.expression import TermExpression, TermExpressionError
from domain.term.kinds import TermKind
from domain.term.parsing import canonical, parse
from domain.term.schedule import AnchorRequired, Window, is_active, next_fire_times, windows

__all__ = [
    "AnchorRequired",
    "TermExpression",
    "TermExpressionError",
    "TermKind",
    "Window",
    "canonical",
    "describe",
    "is_active",
    "next_fire_times",
    "parse",
    "schedule",
    "windows",
]
