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
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(said, reason=reason)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(said, reason=reason)
    if code in _REFUSALS:
        return FailedPrecondition(said, reason=reason)
    return Unavailable(said, reason=reason)
