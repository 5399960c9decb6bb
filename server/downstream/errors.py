"""A downstream system's gRPC failure -> the domain error the caller sees.

Transient trouble stays retryable (UNAVAILABLE, RESOURCE_EXHAUSTED,
DEADLINE_EXCEEDED keep their meaning); a refusal the caller cannot fix by
retrying (the other system says our request is wrong or its state forbids
it) becomes FAILED_PRECONDITION, so that no client retries it.
"""

from __future__ import annotations

import grpc

from domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)

# What a caller is told to wait before retrying a transient failure.
RETRY_AFTER = 1.0

_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}


def translate(system: str, error: grpc.aio.AioRpcError) -> DomainError:
    code = error.code()
    said = f"the {system} answered {code.name}: {error.details()}"
    reason = f"{system.upper().replace(' ', '_')}_{code.name}"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(f"the {system} does not offer this call yet: {error.details()}")
    retry = f"{said}; retry the same request (same request id) in {RETRY_AFTER:g} s"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(retry, reason=reason, retry_after=RETRY_AFTER)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(retry, reason=reason, retry_after=RETRY_AFTER)
    if code in _REFUSALS:
        return FailedPrecondition(said, reason=reason)
    return Unavailable(retry, reason=reason, retry_after=RETRY_AFTER)
