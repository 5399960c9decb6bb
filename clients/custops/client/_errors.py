"""CustopsError: a failed call, readable by people and by code."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

REQUEST_ID_KEY = "x-request-id"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class CustopsError(Exception):
    """A call the platform refused or could not complete.

    Raised as the subclass of its status code (NotFoundError, ...), grouped in
    two families: ClientError (the request, its caller or the resource's state
    must change) and ServerError (the platform or a system behind it failed;
    trying again later may help). `reason` is one of custops.client.reasons.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        field_violations: tuple[FieldViolation, ...] = (),
        request_id: str = "",
        metadata: dict[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        self.code = code
        # Seconds the server asks to wait before retrying (google.rpc.RetryInfo).
        self.retry_delay = retry_delay
        self.message = message
        self.reason = reason
        self.field_violations = field_violations
        self.request_id = request_id
        self.metadata = metadata or {}
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.code.name}: {self.message}"
        tags = [f"reason={self.reason}"] if self.reason else []
        if self.request_id:
            tags.append(f"request_id={self.request_id}")
        if tags:
            head += f" [{', '.join(tags)}]"
        lines = [head] + [f"  - {v.field}: {v.description}" for v in self.field_violations]
        return "\n".join(lines)

    @staticmethod
    def from_rpc_error(error: grpc.RpcError) -> CustopsError:
        """The error of the family of `error`'s code, with its details decoded."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = error.details() if hasattr(error, "details") else str(error)
        trailing = (
            dict(error.trailing_metadata() or ()) if hasattr(error, "trailing_metadata") else {}
        )
        request_id = str(trailing.get(REQUEST_ID_KEY, ""))
        reason = ""
        violations: list[FieldViolation] = []
        metadata: dict[str, str] = {}
        retry_delay: float | None = None
        try:
            status = rpc_status.from_call(error)
        except ValueError:
            status = None
        if status is not None:
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason = info.reason
                    metadata = dict(info.metadata)
                    request_id = request_id or metadata.get("request_id", "")
                elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                    failure = error_details_pb2.PreconditionFailure()
                    detail.Unpack(failure)
                    violations += [
                        FieldViolation(v.subject, v.description) for v in failure.violations
                    ]
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations += [
                        FieldViolation(v.field, v.description) for v in bad.field_violations
                    ]
        return _BY_CODE.get(code, CustopsError)(
            code,
            message or "",
            reason=reason,
            field_violations=tuple(violations),
            request_id=request_id,
            metadata=metadata,
            retry_delay=retry_delay,
        )


class ClientError(CustopsError):
    """The request, the caller's credentials or the resource's state must
    change before the call can succeed."""


class ServerError(CustopsError):
    """The platform, or a system it depends on, could not complete the call."""


class InvalidArgumentError(ClientError):
    """INVALID_ARGUMENT: `field_violations` lists every bad field."""


class OutOfRangeError(ClientError):
    """OUT_OF_RANGE."""


class FailedPreconditionError(ClientError):
    """FAILED_PRECONDITION: the resource's state forbids the call;
    `field_violations` names what must change first."""


class NotFoundError(ClientError):
    """NOT_FOUND."""


class AlreadyExistsError(ClientError):
    """ALREADY_EXISTS."""


class AbortedError(ClientError):
    """ABORTED: a concurrent change won (ETAG_MISMATCH); re-read and retry."""


class UnauthenticatedError(ClientError):
    """UNAUTHENTICATED: no credentials, or unknown ones."""


class PermissionDeniedError(ClientError):
    """PERMISSION_DENIED: the caller may not make this call for this shop."""


class ResourceExhaustedError(ClientError):
    """RESOURCE_EXHAUSTED: over a rate or a quota; `retry_delay` says when to
    try again."""


class CancelledError(ClientError):
    """CANCELLED: the caller cancelled the call."""


class UnavailableError(ServerError):
    """UNAVAILABLE: the platform or a system behind it cannot be reached now."""


class DeadlineExceededError(ServerError):
    """DEADLINE_EXCEEDED."""


class InternalError(ServerError):
    """INTERNAL: the server log has the details under `request_id`."""


class UnimplementedError(ServerError):
    """UNIMPLEMENTED: the call is not offered (yet)."""


class UnknownError(ServerError):
    """UNKNOWN or DATA_LOSS."""


_BY_CODE: dict[grpc.StatusCode, type[CustopsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.UNKNOWN: UnknownError,
    grpc.StatusCode.DATA_LOSS: UnknownError,
}
