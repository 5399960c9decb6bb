"""CustopsClient (blocking) and AsyncCustopsClient (asyncio)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import grpc

from custops.audit.v1 import audit_pb2, audit_pb2_grpc
from custops.client._errors import CustopsError
from custops.client._retry import Attempts, RetryPolicy
from custops.plan.v1 import plan_pb2, plan_pb2_grpc
from custops.scenario.v1 import scenario_pb2, scenario_pb2_grpc

DEFAULT_TIMEOUT = 10.0
Metadata = Sequence[tuple[str, str]]


# Calls that answer with a stream (exports): iterated, not retried, and
# with no deadline unless the caller gives one, as they last as long as
# there is to send. Read from the contracts, so a new stream needs no line.
_STREAMS = frozenset(
    method.name
    for module in (plan_pb2, scenario_pb2, audit_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
    if method.server_streaming
)


def _stream(responses: Any) -> Iterator[Any]:
    try:
        yield from responses
    except grpc.RpcError as exc:
        raise CustopsError.from_rpc_error(exc) from exc


async def _async_stream(responses: Any) -> AsyncIterator[Any]:
    try:
        async for response in responses:
            yield response
    except grpc.RpcError as exc:
        raise CustopsError.from_rpc_error(exc) from exc


def _prepare(request: Any) -> None:
    # A side-effecting call without a request id gets one, written into the
    # caller's message: retrying it (here, or by sending the same message
    # again) can never apply it twice.
    if hasattr(request, "request_id") and not request.request_id:
        request.request_id = uuid.uuid4().hex


class _SyncService:
    def __init__(self, stub: Any, timeout: float, retry: RetryPolicy, metadata: Metadata) -> None:
        self._stub, self._timeout, self._retry, self._metadata = stub, timeout, retry, metadata

    def __getattr__(self, method: str) -> Callable[..., Any]:
        rpc = getattr(self._stub, method)

        def call(request: Any, *, timeout: float | None = None, metadata: Metadata = ()) -> Any:
            _prepare(request)
            if method in _STREAMS:
                return _stream(rpc(request, timeout=timeout, metadata=(*self._metadata, *metadata)))
            attempts = Attempts(self._retry, method, request, timeout or self._timeout)
            while True:
                try:
                    return rpc(
                        request, timeout=attempts.timeout(), metadata=(*self._metadata, *metadata)
                    )
                except grpc.RpcError as exc:
                    error = CustopsError.from_rpc_error(exc)
                    pause = attempts.pause_before_retry(error.code)
                    if pause is None:
                        raise error from exc
                    time.sleep(pause)

        return call


class _AsyncService:
    def __init__(self, stub: Any, timeout: float, retry: RetryPolicy, metadata: Metadata) -> None:
        self._stub, self._timeout, self._retry, self._metadata = stub, timeout, retry, metadata

    def __getattr__(self, method: str) -> Callable[..., Any]:
        rpc = getattr(self._stub, method)

        def call(request: Any, *, timeout: float | None = None, metadata: Metadata = ()) -> Any:
            _prepare(request)
            together = (*self._metadata, *metadata)
            if method in _STREAMS:
                return _async_stream(rpc(request, timeout=timeout, metadata=together))
            return unary(request, timeout, together)

        async def unary(request: Any, timeout: float | None, metadata: Metadata) -> Any:
            attempts = Attempts(self._retry, method, request, timeout or self._timeout)
            while True:
                try:
                    return await rpc(request, timeout=attempts.timeout(), metadata=metadata)
                except grpc.RpcError as exc:
                    error = CustopsError.from_rpc_error(exc)
                    pause = attempts.pause_before_retry(error.code)
                    if pause is None:
                        raise error from exc
                    await asyncio.sleep(pause)

        return call


class CustopsClient:
    """Blocking client. `credentials` = grpc.ssl_channel_credentials(...) for TLS."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        retry = retry or RetryPolicy()
        self.plans = _SyncService(
            plan_pb2_grpc.OperationPlanServiceStub(self.channel), timeout, retry, metadata
        )
        self.scenario = _SyncService(
            scenario_pb2_grpc.ScenarioAggregationServiceStub(self.channel), timeout, retry, metadata
        )
        self.audit = _SyncService(
            audit_pb2_grpc.AuditServiceStub(self.channel), timeout, retry, metadata
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CustopsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCustopsClient:
    """asyncio client; create it inside a running event loop."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        retry = retry or RetryPolicy()
        self.plans = _AsyncService(
            plan_pb2_grpc.OperationPlanServiceStub(self.channel), timeout, retry, metadata
        )
        self.scenario = _AsyncService(
            scenario_pb2_grpc.ScenarioAggregationServiceStub(self.channel), timeout, retry, metadata
        )
        self.audit = _AsyncService(
            audit_pb2_grpc.AuditServiceStub(self.channel), timeout, retry, metadata
        )

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncCustopsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
