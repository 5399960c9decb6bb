"""AuditService: a shop's audit entries, newest first (custops.audit.v1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

import grpc
from google.protobuf.struct_pb2 import Struct

from custops.audit.v1 import audit_pb2 as pb
from custops.audit.v1 import audit_pb2_grpc
from domain.errors import FieldViolation, InvalidArgument, require
from server.downstream.wire import timestamp
from server.persistence.audit_log import AuditEntry, AuditLog
from server.servicers.requests import (
    decode_page_token,
    effective_page_size,
    encode_page_token,
    page_size_violations,
    shop_id_violations,
)

Context: TypeAlias = grpc.aio.ServicerContext


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        start = _instant(request, "start_time")
        end = _instant(request, "end_time")
        violations = shop_id_violations(request.shop_id) if request.shop_id else []
        violations += page_size_violations(request.page_size)
        if len(request.resource) > 300:
            violations.append(FieldViolation("resource", "at most 300 characters"))
        if start is not None and end is not None and end <= start:
            violations.append(FieldViolation("end_time", "must be after start_time"))
        require(violations)
        scope = "|".join(
            ("audit", request.shop_id, request.resource, str(start or ""), str(end or ""))
        )
        before = decode_page_token(request.page_token, scope, lambda p: int(p["seq"]))
        size = effective_page_size(request.page_size)
        found = await self._log.page(
            request.shop_id, request.resource, start, end, before, size + 1
        )
        token = encode_page_token({"seq": found[size - 1].seq}, scope) if len(found) > size else ""
        return pb.ListAuditEntriesResponse(
            entries=[_entry(e) for e in found[:size]], next_page_token=token
        )


def _instant(request: pb.ListAuditEntriesRequest, field: str) -> datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    try:
        value: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            [FieldViolation(field, "a timestamp between years 1 and 9999")]
        ) from None
    return value


def _entry(entry: AuditEntry) -> pb.AuditEntry:
    message = pb.AuditEntry(
        sequence=entry.seq,
        time=timestamp(entry.time),
        shop_id=entry.shop_id,
        caller=entry.caller,
        rpc=entry.rpc,
        resource=entry.resource,
        request_id=entry.request_id,
        outcome=entry.outcome,
    )
    for name, values in (("before", entry.before), ("after", entry.after)):
        if values is not None:
            struct = Struct()
            struct.update(values)
            getattr(message, name).CopyFrom(struct)
    return message
