"""Domain errors -> canonical gRPC status with google.rpc details.

Every error carries one ErrorInfo (reason in UPPER_SNAKE, domain "custops")
and, for bad input, a BadRequest with one field violation per bad field.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from custops.errors.v1 import error_reason_pb2
from domain.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    DuplicateRequest,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

ERROR_DOMAIN = "custops"
# The one list of reasons callers may branch on (protos/custops/errors/v1).
LISTED_REASONS = frozenset(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
log = logging.getLogger("custops.errors")
_unlisted: set[str] = set()

_CODES: list[tuple[type[DomainError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Aborted, grpc.StatusCode.ABORTED),
    (DuplicateRequest, grpc.StatusCode.ABORTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
]


def code_of(error: DomainError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    *,
    violations: tuple[tuple[str, str], ...] = (),
    metadata: dict[str, str] | None = None,
) -> status_pb2.Status:
    if reason not in LISTED_REASONS and reason not in _unlisted:
        _unlisted.add(reason)  # said once: a missing line in the contract, not the caller's fault
        log.error("error reason %s is not in custops.errors.v1.ErrorReason: add it", reason)
    status = status_pb2.Status(code=code.value[0], message=message)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    _pack(status, info)
    if violations:
        _pack(
            status,
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            ),
        )
    return status


def status_of(error: DomainError, request_id: str) -> status_pb2.Status:
    violations: tuple[tuple[str, str], ...] = ()
    if isinstance(error, InvalidArgument):
        violations = tuple((v.field, v.description) for v in error.violations)
    status = rich_status(
        code_of(error),
        error.message,
        error.reason,
        violations=violations,
        metadata={"request_id": request_id},
    )
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=error.retry_after))
        _pack(status, error_details_pb2.RetryInfo(retry_delay=delay))
    if isinstance(error, FailedPrecondition) and error.violations:
        # What about the resource must change first (google.rpc.PreconditionFailure).
        _pack(
            status,
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.reason, subject=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            ),
        )
    return status


def internal_status(request_id: str) -> status_pb2.Status:
    # Never a stack trace to a caller: the request id finds it in the logs.
    return rich_status(
        grpc.StatusCode.INTERNAL,
        f"internal error; the server log has the details under request id {request_id}",
        "INTERNAL",
        metadata={"request_id": request_id},
    )


def _pack(status: status_pb2.Status, detail: object) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    status.details.append(packed)
