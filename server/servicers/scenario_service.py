"""custops.scenario.v1.ScenarioAggregationService: the shoppers' side.

Built so far: ListMemberRecords. The other calls fall through to the
generated base class, answered UNIMPLEMENTED, until they are built.
"""

from __future__ import annotations

import re
from typing import TypeAlias

import grpc

from custops.scenario.v1 import scenario_pb2 as pb
from custops.scenario.v1 import scenario_pb2_grpc
from domain.errors import FieldViolation, require
from server.mapping.scenario import RECORD_KINDS, record_to_proto
from server.servicers.requests import (
    decode_page_token,
    effective_page_size,
    page_size_violations,
    shop_id_violations,
    time_id_reader,
    time_id_token,
)
from server.usecases.scenario import ScenarioUseCases

Context: TypeAlias = grpc.aio.ServicerContext
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KIND_NAMES = {wire: name for name, wire in RECORD_KINDS.items()}


class ScenarioAggregationService(scenario_pb2_grpc.ScenarioAggregationServiceServicer):
    def __init__(self, scenario: ScenarioUseCases) -> None:
        self._scenario = scenario

    async def ListMemberRecords(
        self, request: pb.ListMemberRecordsRequest, context: Context
    ) -> pb.ListMemberRecordsResponse:
        violations = (
            shop_id_violations(request.shop_id)
            + _member_id_violations(request.member_id)
            + page_size_violations(request.page_size)
        )
        kinds = []
        for i, kind in enumerate(request.kinds):
            if kind not in _KIND_NAMES:
                violations.append(
                    FieldViolation(
                        f"kinds[{i}]", f"a RecordKind other than UNSPECIFIED, got {kind}"
                    )
                )
            else:
                kinds.append(_KIND_NAMES[kind])
        require(violations)
        kinds = sorted(set(kinds))
        scope = f"records|{request.shop_id}|{request.member_id}|{','.join(kinds)}"
        before = decode_page_token(request.page_token, scope, _record_cursor)
        size = effective_page_size(request.page_size)
        found = await self._scenario.records(
            request.shop_id, request.member_id, kinds, before, size + 1
        )
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = time_id_token(last.occur_time, last.record_id, scope)
        return pb.ListMemberRecordsResponse(
            records=[record_to_proto(r) for r in found[:size]], next_page_token=token
        )


def _member_id_violations(member_id: str) -> list[FieldViolation]:
    if not _MEMBER_ID.match(member_id):
        return [FieldViolation("member_id", "required: 1-64 letters, digits or '_.:-'")]
    return []


# Record ids are idempotency keys (at most 300 characters, the column's width).
_record_cursor = time_id_reader(re.compile(r"^.{1,300}$", re.DOTALL))
