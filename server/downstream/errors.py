"""The one error model of the downstream adapters.

A call that fails as a whole is a `CallFailed`. A run records its `reason`
(the status code's name) for every item the call carried, tries them again
later when it is `retryable`, and its throttle slows down when the system
`pushed_back`. A use case lets the same failure through to its caller as
`domain_error()`: transient trouble stays retryable (UNAVAILABLE,
RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED keep their meaning); a refusal the
caller cannot fix by retrying (the other system says our request is wrong
or its state forbids it) becomes FAILED_PRECONDITION, so that no client
retries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
# What a later try of the same batch can fix.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
# The reason of a call, or of one item of a batch, that a system refused for
# its capacity.
PUSHED_BACK = grpc.StatusCode.RESOURCE_EXHAUSTED.name

_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}


class CallFailed(Exception):
    """A call to `system` failed as a whole with status `code`."""

    def __init__(self, system: str, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__(code.name)
        self.system, self.code, self.details = system, code, details
        self.reason = code.name
        self.retryable = code in RETRYABLE
        self.pushed_back = self.reason == PUSHED_BACK

    def domain_error(self) -> DomainError:
        """What the caller of a use case is told."""
        system, code = self.system, self.code
        said = f"the {system} answered {code.name}: {self.details}"
        # One of four reasons per system (custops.errors.v1.ErrorReason); the
        # system's own code is in the message.
        prefix = system.upper().replace(" ", "_")
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return Unimplemented(f"the {system} does not offer this call yet: {self.details}")
        retry = f"{said}; retry the same request (same request id) in {RETRY_AFTER:g} s"
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(
                retry, reason=f"{prefix}_DEADLINE_EXCEEDED", retry_after=RETRY_AFTER
            )
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(
                retry, reason=f"{prefix}_RESOURCE_EXHAUSTED", retry_after=RETRY_AFTER
            )
        if code in _REFUSALS:
            return FailedPrecondition(said, reason=f"{prefix}_REFUSED")
        return Unavailable(retry, reason=f"{prefix}_UNAVAILABLE", retry_after=RETRY_AFTER)


@contextmanager
def call_errors(system: str) -> Iterator[None]:
    """A gRPC call inside that fails raises CallFailed."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise CallFailed(system, exc.code(), exc.details()) from exc


@contextmanager
def domain_errors(system: str) -> Iterator[None]:
    """A gRPC call inside that fails raises the domain error a use case's
    caller is told."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise CallFailed(system, exc.code(), exc.details()).domain_error() from exc
