"""Errors the domain raises; the server maps each to one canonical gRPC code.

Each carries a stable UPPER_SNAKE `reason` (the ErrorInfo reason callers may
branch on) and a message for humans.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path (`plan.actions[1].quantity`) and what was expected."""

    field: str
    description: str


class DomainError(Exception):
    reason = "DOMAIN_ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        # Seconds after which a retry may succeed (google.rpc.RetryInfo), if it may.
        self.retry_after = retry_after


class InvalidArgument(DomainError):
    """Bad input; lists every violation at once."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation], *, reason: str | None = None) -> None:
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(summary or "invalid argument", reason=reason)


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The resource is in the wrong state for this call; `violations` name
    what about it must change first (e.g. the fields a draft still lacks)."""

    reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message, reason=reason)
        self.violations = tuple(violations)


class Aborted(DomainError):
    """A concurrent change won (etag mismatch); re-read and retry."""

    reason = "ABORTED"


class Unavailable(DomainError):
    """A system the call depends on cannot be reached now; retrying may help."""

    reason = "UNAVAILABLE"


def require(violations: list[FieldViolation]) -> None:
    """Raise InvalidArgument if any violation was collected."""
    if violations:
        raise InvalidArgument(violations)


class DuplicateRequest(DomainError):
    """Another call with the same request id committed first."""

    reason = "DUPLICATE_REQUEST"


class Unimplemented(DomainError):
    """Not built yet: answered as UNIMPLEMENTED, never with a fake value."""

    reason = "NOT_IMPLEMENTED"


class DeadlineExceeded(DomainError):
    """The call's deadline passed before a system it depends on answered."""

    reason = "DEADLINE_EXCEEDED"


class ResourceExhausted(DomainError):
    """A quota or capacity is used up for now; retry later, slower."""

    reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(DomainError):
    """The caller did not say who it is, or what it said is not known here."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """The caller is known but may not do this (this shop, this role)."""

    reason = "PERMISSION_DENIED"
