"""domain.downstream_ports.AudienceDirectory and AudiencePages over
custops.audience.v1.AudienceService."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc

from custops.audience.v1 import audience_pb2, audience_pb2_grpc
from domain.audience import Rule
from domain.downstream_ports import AudiencePage, AudienceQuery, AudienceSize, RuleCheck
from domain.plan import MessageChannel
from server.downstream.audience_rules import rule_to_proto
from server.downstream.errors import call_errors, domain_errors
from server.downstream.wire import CHANNELS, timestamp
from server.kept import KeptById

SYSTEM = "audience system"


class GrpcAudienceDirectory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = audience_pb2_grpc.AudienceServiceStub(channel)
        # Rules as sent, per rule object: a page asks with the same plans'
        # rules again and again.
        self._rule_proto: KeptById[Rule, audience_pb2.AudienceRule] = KeptById(rule_to_proto)
        # Check lists as sent, by their keys, rules and zones (the rules held,
        # so that their ids are not reused).
        self._checks: dict[
            tuple[tuple[str, int, str], ...],
            tuple[tuple[RuleCheck, ...], list[audience_pb2.RuleCheck]],
        ] = {}

    async def estimate(
        self, shop_id: str, rule: Rule, as_of: datetime, time_zone: str
    ) -> AudienceSize:
        request = audience_pb2.EstimateAudienceRequest(
            shop_id=shop_id,
            rule=rule_to_proto(rule),
            evaluation=audience_pb2.Evaluation(as_of=timestamp(as_of), time_zone=time_zone),
        )
        with domain_errors(SYSTEM):
            response = await self._stub.EstimateAudience(request)
        return AudienceSize(count=response.count, exact=response.exact)

    async def known(self, shop_id: str, member_ids: Sequence[str]) -> set[str]:
        with domain_errors(SYSTEM):
            response = await self._profiles(shop_id, member_ids)
        return set(member_ids) - set(response.unknown_member_ids)

    async def match_rules(
        self,
        shop_id: str,
        member_ids: Sequence[str],
        checks: Sequence[RuleCheck],
        as_of: datetime,
    ) -> dict[str, set[str]]:
        request = self._match_request(shop_id, member_ids, checks, as_of)
        with domain_errors(SYSTEM):
            response = await self._stub.BatchMatchMemberRules(request)
        return {m.member_id: set(m.matched_keys) for m in response.members if not m.unknown_member}

    async def matching(
        self, shop_id: str, member_ids: Sequence[str], rule: Rule, as_of: datetime, time_zone: str
    ) -> set[str]:
        request = self._match_request(
            shop_id, member_ids, [RuleCheck("rule", rule, time_zone)], as_of
        )
        with call_errors(SYSTEM):
            response = await self._stub.BatchMatchMemberRules(request)
        return {m.member_id for m in response.members if "rule" in m.matched_keys}

    async def page(self, query: AudienceQuery) -> AudiencePage:
        request = audience_pb2.ListAudienceMembersRequest(
            shop_id=query.shop_id,
            rule=rule_to_proto(query.rule) if query.rule is not None else None,
            evaluation=audience_pb2.Evaluation(
                as_of=timestamp(query.as_of), time_zone=query.time_zone
            ),
            page_size=query.page_size,
            page_token=query.page_token,
            shard_count=query.shard_count,
            shard_index=query.shard_index,
        )
        with call_errors(SYSTEM):
            response = await self._stub.ListAudienceMembers(request)
        return AudiencePage(tuple(response.member_ids), response.next_page_token)

    async def unknown(self, shop_id: str, member_ids: Sequence[str]) -> list[str]:
        with call_errors(SYSTEM):
            response = await self._profiles(shop_id, member_ids)
        return list(response.unknown_member_ids)

    async def opted_out(
        self, shop_id: str, member_ids: Sequence[str]
    ) -> dict[str, frozenset[MessageChannel]]:
        with call_errors(SYSTEM):
            response = await self._profiles(shop_id, member_ids)
        return {
            p.member_id: frozenset(CHANNELS[c] for c in p.opted_out_channels if c in CHANNELS)
            for p in response.profiles
            if p.opted_out_channels
        }

    async def _profiles(
        self, shop_id: str, member_ids: Sequence[str]
    ) -> audience_pb2.BatchGetMemberProfilesResponse:
        request = audience_pb2.BatchGetMemberProfilesRequest(
            shop_id=shop_id, member_ids=list(member_ids)
        )
        response: audience_pb2.BatchGetMemberProfilesResponse = (
            await self._stub.BatchGetMemberProfiles(request)
        )
        return response

    def _match_request(
        self,
        shop_id: str,
        member_ids: Sequence[str],
        checks: Sequence[RuleCheck],
        as_of: datetime,
    ) -> audience_pb2.BatchMatchMemberRulesRequest:
        """One BatchMatchMemberRules call: a shopper's page (match_rules) and
        a run's due members (matching) ask alike, each with its own errors."""
        request = audience_pb2.BatchMatchMemberRulesRequest(
            shop_id=shop_id, member_ids=member_ids, as_of=timestamp(as_of)
        )
        request.checks.extend(self._checks_proto(checks))
        return request

    def _checks_proto(self, checks: Sequence[RuleCheck]) -> list[audience_pb2.RuleCheck]:
        """The checks as sent, kept: pages ask with the same plans' checks
        again and again, and the instant travels beside them."""
        key = tuple((c.key, id(c.rule), c.time_zone) for c in checks)
        kept = self._checks.get(key)
        if kept is not None and all(a.rule is b.rule for a, b in zip(kept[0], checks, strict=True)):
            return kept[1]
        if len(self._checks) >= 1_000:
            self._checks.clear()
        protos = [
            audience_pb2.RuleCheck(
                key=c.key,
                rule=self._rule_proto(c.rule),
                evaluation=audience_pb2.Evaluation(time_zone=c.time_zone),
            )
            for c in checks
        ]
        self._checks[key] = (tuple(checks), protos)
        return protos
