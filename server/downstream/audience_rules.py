"""custops.audience.v1.AudienceRule <-> domain.audience.Rule."""

from __future__ import annotations

from custops.audience.v1 import audience_pb2 as pb
from domain import audience as a
from domain.audience import MAX_RULE_DEPTH
from domain.errors import FieldViolation, InvalidArgument

_SCOPES = {
    pb.BIRTHDAY_SCOPE_DAY: a.BirthdayScope.DAY,
    pb.BIRTHDAY_SCOPE_WEEK: a.BirthdayScope.WEEK,
    pb.BIRTHDAY_SCOPE_MONTH: a.BirthdayScope.MONTH,
}
_SCOPES_BACK = {v: k for k, v in _SCOPES.items()}


def rule_from_proto(msg: pb.AudienceRule, path: str, depth: int = 1) -> a.Rule:
    """The domain rule, or InvalidArgument naming the first malformed field."""
    if depth > MAX_RULE_DEPTH:
        raise _invalid(path, f"rules may nest at most {MAX_RULE_DEPTH} levels deep")
    kind = msg.WhichOneof("condition")
    match kind:
        case "levels":
            return a.Levels(tuple(msg.levels.levels))
        case "birthday":
            scope = _SCOPES.get(msg.birthday.scope)
            if scope is None:
                raise _invalid(f"{path}.birthday.scope", "must be DAY, WEEK or MONTH")
            return a.Birthday(scope, msg.birthday.days_ahead)
        case "follower":
            return a.Follower()
        case "browsed_not_bought":
            return a.BrowsedNotBought(msg.browsed_not_bought.within_days)
        case "carted_not_paid":
            return a.CartedNotPaid(msg.carted_not_paid.within_days)
        case "tags":
            if msg.tags.match not in (pb.TAG_MATCH_UNSPECIFIED, pb.TAG_MATCH_ANY, pb.TAG_MATCH_ALL):
                raise _invalid(f"{path}.tags.match", "must be ANY or ALL")
            return a.Tags(tuple(msg.tags.tags), msg.tags.match == pb.TAG_MATCH_ALL)
        case "all_of":
            return a.AllOf(_rules(msg.all_of, f"{path}.all_of", depth))
        case "any_of":
            return a.AnyOf(_rules(msg.any_of, f"{path}.any_of", depth))
        case "negate":
            return a.Not(rule_from_proto(msg.negate, f"{path}.negate", depth + 1))
        case "members":
            return a.Members(tuple(msg.members.member_ids))
    raise _invalid(path, "must set one condition (levels, birthday, follower, ...)")


def _rules(msg: pb.RuleList, path: str, depth: int) -> tuple[a.Rule, ...]:
    return tuple(
        rule_from_proto(r, f"{path}.rules[{i}]", depth + 1) for i, r in enumerate(msg.rules)
    )


def rule_to_proto(rule: a.Rule) -> pb.AudienceRule:
    match rule:
        case a.Levels(levels):
            return pb.AudienceRule(levels=pb.LevelCondition(levels=levels))
        case a.Birthday(scope, days_ahead):
            return pb.AudienceRule(
                birthday=pb.BirthdayCondition(scope=_SCOPES_BACK[scope], days_ahead=days_ahead)
            )
        case a.Follower():
            return pb.AudienceRule(follower=pb.FollowerCondition())
        case a.BrowsedNotBought(days):
            return pb.AudienceRule(
                browsed_not_bought=pb.BrowsedNotBoughtCondition(within_days=days)
            )
        case a.CartedNotPaid(days):
            return pb.AudienceRule(carted_not_paid=pb.CartedNotPaidCondition(within_days=days))
        case a.Tags(tags, match_all):
            match = pb.TAG_MATCH_ALL if match_all else pb.TAG_MATCH_ANY
            return pb.AudienceRule(tags=pb.TagCondition(tags=tags, match=match))
        case a.AllOf(rules):
            return pb.AudienceRule(all_of=pb.RuleList(rules=[rule_to_proto(r) for r in rules]))
        case a.AnyOf(rules):
            return pb.AudienceRule(any_of=pb.RuleList(rules=[rule_to_proto(r) for r in rules]))
        case a.Not(sub):
            return pb.AudienceRule(negate=rule_to_proto(sub))
        case a.Members(ids):
            return pb.AudienceRule(members=pb.MemberList(member_ids=ids))
    raise TypeError(f"unknown rule {rule!r}")


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, description)])
