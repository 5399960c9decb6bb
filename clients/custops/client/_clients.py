"""CustopsClient (blocking) and AsyncCustopsClient (asyncio)."""

from __future__ import annotations

import grpc

from custops.client._calls import Metadata
from custops.client._retry import RetryPolicy
from custops.client._services import (
    AsyncAuditService,
    AsyncOperationPlanService,
    AsyncScenarioAggregationService,
    AuditService,
    OperationPlanService,
    ScenarioAggregationService,
)

DEFAULT_TIMEOUT = 10.0


class CustopsClient:
    """Blocking client. `credentials` = grpc.ssl_channel_credentials(...) for TLS.

    `fill_request_ids`: a side-effecting call whose request has an empty
    `request_id` gets a fresh one (written into the caller's message), so
    that it may be retried safely; False sends it as it is, and then such a
    call is never retried.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        credentials: grpc.ChannelCredentials | None = None,
        fill_request_ids: bool = True,
    ) -> None:
        self.channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        with_ = (self.channel, timeout, retry or RetryPolicy(), metadata, fill_request_ids)
        self.plans = OperationPlanService(*with_)
        self.scenario = ScenarioAggregationService(*with_)
        self.audit = AuditService(*with_)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CustopsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCustopsClient:
    """asyncio client; create it inside a running event loop. Arguments as
    CustopsClient's."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        credentials: grpc.ChannelCredentials | None = None,
        fill_request_ids: bool = True,
    ) -> None:
        self.channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        with_ = (self.channel, timeout, retry or RetryPolicy(), metadata, fill_request_ids)
        self.plans = AsyncOperationPlanService(*with_)
        self.scenario = AsyncScenarioAggregationService(*with_)
        self.audit = AsyncAuditService(*with_)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncCustopsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
