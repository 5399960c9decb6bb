"""How the audience stand-in evaluates a rule for one member, as of an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from domain import audience as a
from domain.birthday import matches
from server.stand_ins.population import Member


@dataclass(frozen=True)
class Moment:
    """The evaluation instant and its date in the evaluation zone."""

    at: datetime
    local_date: date


def evaluate(rule: a.Rule, m: Member, now: Moment) -> bool:
    match rule:
        case a.Levels(levels):
            return m.level in levels
        case a.Birthday(scope, days_ahead):
            return matches(scope, m.birth_month, m.birth_day, now.local_date, days_ahead)
        case a.Follower():
            return m.follower
        case a.BrowsedNotBought(days):
            # Browsed within the window, and no order since that visit.
            return _within(m.last_browse, days, now.at) and not _after(m.last_order, m.last_browse)
        case a.CartedNotPaid(days):
            return _within(m.last_cart, days, now.at) and not _after(m.last_order, m.last_cart)
        case a.Tags(tags, match_all):
            return set(tags) <= m.tags if match_all else not m.tags.isdisjoint(tags)
        case a.AllOf(rules):
            return all(evaluate(r, m, now) for r in rules)
        case a.AnyOf(rules):
            return any(evaluate(r, m, now) for r in rules)
        case a.Not(sub):
            return not evaluate(sub, m, now)
        case a.Members(ids):
            return m.member_id in ids
    raise TypeError(f"unknown rule {rule!r}")


def _within(event: datetime | None, days: int, at: datetime) -> bool:
    return event is not None and at - timedelta(days=days) <= event <= at


def _after(later: datetime | None, earlier: datetime | None) -> bool:
    return later is not None and earlier is not None and later >= earlier
