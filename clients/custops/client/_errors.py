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
    """A call the platform refused or could not complete."""

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

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> CustopsError:
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
        return cls(
            code,
            message or "",
            reason=reason,
            field_violations=tuple(violations),
            request_id=request_id,
            metadata=metadata,
            retry_delay=retry_delay,
        )
