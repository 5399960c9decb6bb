"""A scripted audience system for tests that need a downstream to answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc

from custops.audience.v1 import audience_pb2, audience_pb2_grpc


@dataclass
class FakeAudience(audience_pb2_grpc.AudienceServiceServicer):  # only EstimateAudience is scripted
    count: int = 42
    delay: float = 0.0
    metadata: list[dict[str, str]] = field(default_factory=list)
    remaining: list[float | None] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def EstimateAudience(
        self, request: audience_pb2.EstimateAudienceRequest, context: grpc.aio.ServicerContext
    ) -> audience_pb2.EstimateAudienceResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        self.remaining.append(context.time_remaining())
        self.called.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return audience_pb2.EstimateAudienceResponse(count=self.count, exact=True)


async def serve(servicer: FakeAudience) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    audience_pb2_grpc.add_AudienceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port
