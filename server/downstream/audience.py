"""domain.ports.AudienceDirectory over custops.audience.v1.AudienceService."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc

from custops.audience.v1 import audience_pb2, audience_pb2_grpc
from domain.audience import Rule
from domain.ports import AudienceSize, RuleCheck
from server.downstream.errors import translate
from server.mapping.audience import rule_to_proto
from server.mapping.plan import timestamp

SYSTEM = "audience system"


class GrpcAudienceDirectory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = audience_pb2_grpc.AudienceServiceStub(channel)
        # Rules as sent, by the rule object: a page asks with the same plans'
        # rules again and again. Holding the rule keeps its id from reuse.
        self._protos: dict[int, tuple[Rule, audience_pb2.AudienceRule]] = {}

    def _rule_proto(self, rule: Rule) -> audience_pb2.AudienceRule:
        kept = self._protos.get(id(rule))
        if kept is not None and kept[0] is rule:
            return kept[1]
        if len(self._protos) >= 10_000:
            self._protos.clear()
        proto = rule_to_proto(rule)
        self._protos[id(rule)] = (rule, proto)
        return proto

    async def estimate(
        self, shop_id: str, rule: Rule, as_of: datetime, time_zone: str
    ) -> AudienceSize:
        request = audience_pb2.EstimateAudienceRequest(
            shop_id=shop_id,
            rule=rule_to_proto(rule),
            evaluation=audience_pb2.Evaluation(as_of=timestamp(as_of), time_zone=time_zone),
        )
        try:
            response = await self._stub.EstimateAudience(request)
        except grpc.aio.AioRpcError as exc:
            raise translate(SYSTEM, exc) from exc
        return AudienceSize(count=response.count, exact=response.exact)

    async def known(self, shop_id: str, member_ids: Sequence[str]) -> set[str]:
        request = audience_pb2.BatchGetMemberProfilesRequest(
            shop_id=shop_id, member_ids=list(member_ids)
        )
        try:
            response = await self._stub.BatchGetMemberProfiles(request)
        except grpc.aio.AioRpcError as exc:
            raise translate(SYSTEM, exc) from exc
        return set(member_ids) - set(response.unknown_member_ids)

    async def match_rules(
        self, shop_id: str, member_id: str, checks: Sequence[RuleCheck], as_of: datetime
    ) -> set[str] | None:
        at = timestamp(as_of)
        request = audience_pb2.MatchMemberRulesRequest(
            shop_id=shop_id,
            member_id=member_id,
            checks=[
                audience_pb2.RuleCheck(
                    key=c.key,
                    rule=self._rule_proto(c.rule),
                    evaluation=audience_pb2.Evaluation(as_of=at, time_zone=c.time_zone),
                )
                for c in checks
            ],
        )
        try:
            response = await self._stub.MatchMemberRules(request)
        except grpc.aio.AioRpcError as exc:
            raise translate(SYSTEM, exc) from exc
        return None if response.unknown_member else set(response.matched_keys)
