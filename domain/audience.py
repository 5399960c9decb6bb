"""Audience rules: who a plan is for.

The rule is owned by the audience system: the plan holds it and sends it
there, and never evaluates it itself. Here it is only modelled and checked
for shape (sizes, depth, values in range).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from domain.errors import FieldViolation

MAX_RULE_DEPTH = 8
MAX_LIST_ITEMS = 1000
MAX_WITHIN_DAYS = 365
MAX_DAYS_AHEAD = 31
MAX_CODE_LENGTH = 64


class BirthdayScope(enum.Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Levels:
    levels: tuple[str, ...]


@dataclass(frozen=True)
class Birthday:
    scope: BirthdayScope
    days_ahead: int = 0


@dataclass(frozen=True)
class Follower:
    pass


@dataclass(frozen=True)
class BrowsedNotBought:
    within_days: int


@dataclass(frozen=True)
class CartedNotPaid:
    within_days: int


@dataclass(frozen=True)
class Tags:
    tags: tuple[str, ...]
    match_all: bool = False


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class Members:
    member_ids: tuple[str, ...]


Rule = (
    Levels
    | Birthday
    | Follower
    | BrowsedNotBought
    | CartedNotPaid
    | Tags
    | AllOf
    | AnyOf
    | Not
    | Members
)


def listed_members(rule: Rule) -> tuple[str, ...] | None:
    """The ids a rule is limited to, when it names them (a precise audience,
    alone or as part of an all-of); None when it does not."""
    match rule:
        case Members(ids):
            return ids
        case AllOf(rules):
            for sub in rules:
                found = listed_members(sub)
                if found is not None:
                    return found
    return None


def validate_rule(rule: Rule, path: str, depth: int = 1) -> list[FieldViolation]:
    """Every shape problem of `rule`, each named by its field path."""
    if depth > MAX_RULE_DEPTH:
        return [FieldViolation(path, f"rules may nest at most {MAX_RULE_DEPTH} levels deep")]
    match rule:
        case Levels(levels):
            return _codes(levels, f"{path}.levels.levels", "level")
        case Birthday(_, days_ahead):
            if not 0 <= days_ahead <= MAX_DAYS_AHEAD:
                return [
                    FieldViolation(
                        f"{path}.birthday.days_ahead",
                        f"must be between 0 and {MAX_DAYS_AHEAD}, got {days_ahead}",
                    )
                ]
            return []
        case Follower():
            return []
        case BrowsedNotBought(days):
            return _within_days(days, f"{path}.browsed_not_bought.within_days")
        case CartedNotPaid(days):
            return _within_days(days, f"{path}.carted_not_paid.within_days")
        case Tags(tags, _):
            return _codes(tags, f"{path}.tags.tags", "tag")
        case AllOf(rules) | AnyOf(rules):
            name = "all_of" if isinstance(rule, AllOf) else "any_of"
            if not rules:
                return [FieldViolation(f"{path}.{name}.rules", "must hold at least one rule")]
            if len(rules) > MAX_LIST_ITEMS:
                return [FieldViolation(f"{path}.{name}.rules", f"at most {MAX_LIST_ITEMS} rules")]
            out: list[FieldViolation] = []
            for i, sub in enumerate(rules):
                out += validate_rule(sub, f"{path}.{name}.rules[{i}]", depth + 1)
            return out
        case Not(sub):
            return validate_rule(sub, f"{path}.negate", depth + 1)
        case Members(ids):
            return _codes(ids, f"{path}.members.member_ids", "member id")
    raise TypeError(f"unknown rule {rule!r}")


def _within_days(days: int, path: str) -> list[FieldViolation]:
    if not 1 <= days <= MAX_WITHIN_DAYS:
        return [FieldViolation(path, f"must be between 1 and {MAX_WITHIN_DAYS} days, got {days}")]
    return []


def _codes(values: tuple[str, ...], path: str, what: str) -> list[FieldViolation]:
    if not values:
        return [FieldViolation(path, f"must hold at least one {what}")]
    if len(values) > MAX_LIST_ITEMS:
        return [FieldViolation(path, f"at most {MAX_LIST_ITEMS} items, got {len(values)}")]
    out = []
    for i, value in enumerate(values):
        if not value.strip() or len(value) > MAX_CODE_LENGTH:
            out.append(
                FieldViolation(
                    f"{path}[{i}]", f"must be a non-blank {what} of at most {MAX_CODE_LENGTH} chars"
                )
            )
    return out
