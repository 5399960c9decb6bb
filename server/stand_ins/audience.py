"""The audience system's stand-in: a synthetic population and rule evaluation.

- Estimate: exact up to `exact_limit` members, above it a deterministic
  sample, labelled `exact=false`.
- Paging: members in index order (stable), by an opaque cursor that holds
  the position and the evaluation instant, so a caller that crashed resumes
  from its last cursor and gets the same members. A page scans at most
  `scan_budget` members, so it may hold fewer than page_size (or none) and
  still have a next page.
- Sizes: a shop has `population.size_of(shop)` members; an id past that is
  unknown to the shop (estimates, pages, shards and matches all follow it).
- MatchMemberRules: one member against many rules (a shopper's page); the
  member is generated once, and the call costs one item of capacity.
  BatchMatchMemberRules: the same for many members, one item each.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import grpc

from custops.audience.v1 import audience_pb2 as pb
from custops.audience.v1 import audience_pb2_grpc
from domain import audience as a
from domain.audience import validate_rule
from domain.errors import InvalidArgument, require
from domain.zones import DEFAULT_TIME_ZONE, is_time_zone
from domain.zones import zone as zone_of
from server.downstream.audience_rules import rule_from_proto
from server.downstream.wire import timestamp
from server.mapping.plan import in_term_years
from server.stand_ins.audience_rules import Moment, evaluate
from server.stand_ins.population import Member, Population
from server.stand_ins.pressure import MAX_BATCH, Pressure

DEFAULT_PAGE_SIZE = 1000

MAX_IDS = 1000
MAX_CHECKS = 1000
SAMPLE = 20_000


class AudienceStub(audience_pb2_grpc.AudienceServiceServicer):
    def __init__(
        self,
        population: Population,
        pressure: Pressure,
        exact_limit: int = 200_000,
        scan_budget: int = 200_000,
    ) -> None:
        self.population = population
        self.pressure = pressure
        self.exact_limit = exact_limit
        self.scan_budget = scan_budget

    async def EstimateAudience(
        self, request: pb.EstimateAudienceRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateAudienceResponse:
        rule, moment = await _parse(request.rule, request.evaluation, context)
        await self.pressure.admit(context, 1)
        # Scans run in a thread: embedded in `custops serve`, a long scan
        # must not stall the platform's event loop.
        count, exact = await asyncio.to_thread(self._estimate, request.shop_id, rule, moment)
        self.pressure.item_succeeded()
        await self.pressure.deliver(context)
        return pb.EstimateAudienceResponse(count=count, exact=exact)

    def _estimate(self, shop_id: str, rule: a.Rule, moment: Moment) -> tuple[int, bool]:
        listed = a.listed_members(rule)
        size = self.population.size_of(shop_id)
        if listed is not None:
            return len(self._matching_ids(shop_id, rule, moment, listed)), True
        base = self.population.base(shop_id)
        if size <= self.exact_limit:
            hits = sum(
                evaluate(rule, self.population.member(shop_id, i, base), moment)
                for i in range(size)
            )
            return hits, True
        # Evenly spaced members stand for the whole population.
        step = size / SAMPLE
        hits = sum(
            evaluate(rule, self.population.member(shop_id, int(k * step), base), moment)
            for k in range(SAMPLE)
        )
        return round(hits * size / SAMPLE), False

    async def ListAudienceMembers(
        self, request: pb.ListAudienceMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAudienceMembersResponse:
        if request.page_size < 0 or request.page_size > MAX_BATCH:
            await _invalid(context, "page_size", f"must be 0-{MAX_BATCH} (0 = {DEFAULT_PAGE_SIZE})")
        shards = max(request.shard_count, 1)
        if not 0 <= request.shard_index < shards:
            await _invalid(context, "shard_index", f"must be 0-{shards - 1}")
        rule, moment = await _parse(request.rule, request.evaluation, context)
        fingerprint = _fingerprint(request)
        start, end = _shard(self.population.size_of(request.shop_id), request.shard_index, shards)
        position = start
        if request.page_token:
            cursor = _read_cursor(request.page_token)
            if cursor is None or cursor["f"] != fingerprint:
                await _invalid(
                    context, "page_token", "not a cursor of this rule, evaluation and shard"
                )
            assert cursor is not None
            position = int(cursor["i"])
            if not start <= position <= end:
                await _invalid(context, "page_token", "the cursor is outside this shard")
            moment = Moment(
                datetime.fromtimestamp(cursor["t"], UTC), datetime.fromisoformat(cursor["d"]).date()
            )
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        await self.pressure.admit(context, page_size)
        members, position = await asyncio.to_thread(
            self._page, request.shop_id, rule, moment, position, end, page_size
        )
        self.pressure.item_succeeded(len(members))
        token = ""
        if position < end:
            token = _write_cursor(
                {
                    "f": fingerprint,
                    "i": position,
                    "t": moment.at.timestamp(),
                    "d": moment.local_date.isoformat(),
                }
            )
        await self.pressure.deliver(context)
        return pb.ListAudienceMembersResponse(member_ids=members, next_page_token=token)

    def _page(
        self, shop_id: str, rule: a.Rule, moment: Moment, position: int, end: int, page_size: int
    ) -> tuple[list[str], int]:
        listed = a.listed_members(rule)
        if listed is not None:
            # A precise audience: only its members, in index order.
            ids = self._matching_ids(shop_id, rule, moment, listed)
            found_at = (self.population.index_of(i, shop_id) for i in ids)
            indexes = sorted(i for i in found_at if i is not None)
            chosen = [i for i in indexes if position <= i < end][:page_size]
            next_position = chosen[-1] + 1 if len(chosen) == page_size else end
            return [self.population.member_id(i) for i in chosen], next_position
        base = self.population.base(shop_id)
        found: list[str] = []
        budget_end = min(end, position + self.scan_budget)
        while position < budget_end and len(found) < page_size:
            member = self.population.member(shop_id, position, base)
            if evaluate(rule, member, moment):
                found.append(member.member_id)
            position += 1
        return found, position

    def _matching_ids(
        self, shop_id: str, rule: a.Rule, moment: Moment, ids: tuple[str, ...]
    ) -> list[str]:
        out = []
        for member in self._known(shop_id, ids):
            if evaluate(rule, member, moment):
                out.append(member.member_id)
        return out

    def _known(self, shop_id: str, ids: Any) -> list[Member]:
        base = self.population.base(shop_id)
        indexes = (self.population.index_of(i, shop_id) for i in dict.fromkeys(ids))
        return [self.population.member(shop_id, i, base) for i in indexes if i is not None]

    async def MatchMembers(
        self, request: pb.MatchMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.MatchMembersResponse:
        if len(request.member_ids) > MAX_IDS:
            await _invalid(context, "member_ids", f"at most {MAX_IDS} per call")
        rule, moment = await _parse(request.rule, request.evaluation, context)
        await self.pressure.admit(context, max(len(request.member_ids), 1))
        matched = set(self._matching_ids(request.shop_id, rule, moment, tuple(request.member_ids)))
        unknown = [
            i for i in request.member_ids if self.population.index_of(i, request.shop_id) is None
        ]
        self.pressure.item_succeeded(len(request.member_ids))
        await self.pressure.deliver(context)
        return pb.MatchMembersResponse(
            matched_member_ids=[i for i in dict.fromkeys(request.member_ids) if i in matched],
            unknown_member_ids=unknown,
        )

    async def MatchMemberRules(
        self, request: pb.MatchMemberRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.MatchMemberRulesResponse:
        """Which of the checks one member matches, each at its own evaluation
        (a shopper's page view). One item of capacity per call, whatever the
        number of checks: it is one member, generated once."""
        if not request.member_id:
            await _invalid(context, "member_id", "is required")
        checks = await _parse_checks(request.checks, context)
        await self.pressure.admit(context, 1)
        matched = self._matched_keys(request.shop_id, request.member_id, checks)
        self.pressure.item_succeeded()
        await self.pressure.deliver(context)
        return pb.MatchMemberRulesResponse(
            matched_keys=matched or [], unknown_member=matched is None
        )

    async def BatchMatchMemberRules(
        self, request: pb.BatchMatchMemberRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchMatchMemberRulesResponse:
        """MatchMemberRules for several members (shoppers' pages asked
        together): the checks are read once; one item of capacity per member."""
        if len(request.member_ids) > MAX_IDS:
            await _invalid(context, "member_ids", f"at most {MAX_IDS} per call")
        for n, member_id in enumerate(request.member_ids):
            if not member_id:
                await _invalid(context, f"member_ids[{n}]", "is required")
        as_of = None
        if request.HasField("as_of"):
            if not (in_term_years(request.as_of.seconds) and 0 <= request.as_of.nanos < 10**9):
                await _invalid(context, "as_of", "must be between 1970 and 2199")
            as_of = request.as_of.ToDatetime(UTC)
        checks = await _parse_checks(request.checks, context, as_of)
        await self.pressure.admit(context, max(len(request.member_ids), 1))
        members = []
        for member_id in request.member_ids:
            matched = self._matched_keys(request.shop_id, member_id, checks)
            members.append(
                pb.MemberRuleMatches(
                    member_id=member_id, matched_keys=matched or [], unknown_member=matched is None
                )
            )
        self.pressure.item_succeeded(len(members))
        await self.pressure.deliver(context)
        return pb.BatchMatchMemberRulesResponse(members=members)

    def _matched_keys(
        self, shop_id: str, member_id: str, checks: list[tuple[str, a.Rule, Moment]]
    ) -> list[str] | None:
        """The keys the member matches, in check order; None for a stranger."""
        index = self.population.index_of(member_id, shop_id)
        if index is None:
            return None
        member = self.population.member(shop_id, index)
        return [key for key, rule, moment in checks if evaluate(rule, member, moment)]

    def _profile(self, shop_id: str, m: Member) -> pb.MemberProfile:
        return _profile(shop_id, m, self.population.opted_out.get((shop_id, m.member_id), set()))

    async def BatchGetMemberProfiles(
        self, request: pb.BatchGetMemberProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetMemberProfilesResponse:
        if len(request.member_ids) > MAX_IDS:
            await _invalid(context, "member_ids", f"at most {MAX_IDS} per call")
        await self.pressure.admit(context, max(len(request.member_ids), 1))
        members = self._known(request.shop_id, request.member_ids)
        unknown = [
            i for i in request.member_ids if self.population.index_of(i, request.shop_id) is None
        ]
        self.pressure.item_succeeded(len(members))
        await self.pressure.deliver(context)
        return pb.BatchGetMemberProfilesResponse(
            profiles=[self._profile(request.shop_id, m) for m in members],
            unknown_member_ids=unknown,
        )


async def _parse_checks(
    checks: Any, context: grpc.aio.ServicerContext, as_of: datetime | None = None
) -> list[tuple[str, a.Rule, Moment]]:
    """Named checks, each key once; every bad one answered INVALID_ARGUMENT.
    A check without its own as_of is evaluated at `as_of`, or now."""
    if len(checks) > MAX_CHECKS:
        await _invalid(context, "checks", f"at most {MAX_CHECKS} per call")
    now = as_of or datetime.now(UTC)  # one instant for every check without as_of
    keys: set[str] = set()
    # The checks of a page mostly share one evaluation: work it out once.
    moments: dict[bytes, Moment] = {}
    out: list[tuple[str, a.Rule, Moment]] = []
    for n, check in enumerate(checks):
        prefix = f"checks[{n}]."
        if not check.key:
            await _invalid(context, f"{prefix}key", "is required")
        if check.key in keys:
            await _invalid(context, f"{prefix}key", f"duplicate key {check.key!r}")
        keys.add(check.key)
        rule = await _parse_rule(check.rule, context, prefix)
        evaluation = check.evaluation.SerializeToString(deterministic=True)
        moment = moments.get(evaluation)
        if moment is None:
            moment = await _parse_moment(check.evaluation, context, prefix, now)
            moments[evaluation] = moment
        out.append((check.key, rule, moment))
    return out


def _profile(shop_id: str, m: Member, opted_out: set[int]) -> pb.MemberProfile:
    profile = pb.MemberProfile(
        opted_out_channels=sorted(opted_out),  # type: ignore[arg-type]
        member_id=m.member_id,
        shop_id=shop_id,
        level=m.level,
        birthday=pb.Date(year=m.birth_year, month=m.birth_month, day=m.birth_day),
        follower=m.follower,
        tags=sorted(m.tags),
        join_time=timestamp(m.join_time),
        display_name=f"Member {m.index}",
    )
    for name in ("last_browse", "last_order", "last_cart"):
        value = getattr(m, name)
        if value is not None:
            getattr(profile, f"{name}_time").CopyFrom(timestamp(value))
    return profile


async def _parse(
    rule: pb.AudienceRule,
    evaluation: pb.Evaluation,
    context: grpc.aio.ServicerContext,
    prefix: str = "",
    now: datetime | None = None,
) -> tuple[a.Rule, Moment]:
    """The rule and its evaluation instant (`now` when it has no as_of);
    problems are INVALID_ARGUMENT naming `{prefix}rule...` or
    `{prefix}evaluation...`."""
    parsed = await _parse_rule(rule, context, prefix)
    return parsed, await _parse_moment(evaluation, context, prefix, now)


async def _parse_rule(
    rule: pb.AudienceRule, context: grpc.aio.ServicerContext, prefix: str = ""
) -> a.Rule:
    try:
        parsed = rule_from_proto(rule, f"{prefix}rule")
        require(validate_rule(parsed, f"{prefix}rule"))
    except InvalidArgument as exc:
        await _invalid(context, exc.violations[0].field, exc.violations[0].description)
        raise
    return parsed


async def _parse_moment(
    evaluation: pb.Evaluation,
    context: grpc.aio.ServicerContext,
    prefix: str = "",
    now: datetime | None = None,
) -> Moment:
    zone = evaluation.time_zone or DEFAULT_TIME_ZONE
    if not is_time_zone(zone):
        await _invalid(context, f"{prefix}evaluation.time_zone", "must be an IANA time zone")
    if evaluation.HasField("as_of") and not (
        in_term_years(evaluation.as_of.seconds) and 0 <= evaluation.as_of.nanos < 10**9
    ):
        await _invalid(context, f"{prefix}evaluation.as_of", "must be between 1970 and 2199")
    if evaluation.HasField("as_of"):
        at = evaluation.as_of.ToDatetime(UTC)
    else:
        at = now or datetime.now(UTC)
    return Moment(at, at.astimezone(zone_of(zone)).date())


async def _invalid(context: grpc.aio.ServicerContext, field: str, description: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {description}")


def _fingerprint(request: pb.ListAudienceMembersRequest) -> str:
    """What a cursor belongs to: shop, rule, zone and shard (not the page)."""
    key = pb.ListAudienceMembersRequest(
        shop_id=request.shop_id,
        rule=request.rule,
        evaluation=pb.Evaluation(time_zone=request.evaluation.time_zone),
        shard_count=request.shard_count,
        shard_index=request.shard_index,
    )
    return hashlib.sha256(key.SerializeToString(deterministic=True)).hexdigest()[:24]


def _shard(size: int, index: int, count: int) -> tuple[int, int]:
    return size * index // count, size * (index + 1) // count


def _write_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _read_cursor(token: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(data, dict) and {"f", "i", "t", "d"} <= data.keys():
            at = float(data["t"])
            if not (isinstance(data["i"], int) and in_term_years(at)):
                return None
            datetime.fromisoformat(data["d"])
            return data
    except (ValueError, TypeError, OverflowError):
        pass
    return None
