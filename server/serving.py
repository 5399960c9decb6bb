"""What every gRPC server here carries besides its services: health per
service and server reflection (v1alpha, which grpcurl falls back to)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


async def add_health_and_reflection(
    server: grpc.aio.Server, services: tuple[str, ...]
) -> health.aio.HealthServicer:
    """Health SERVING for the server ("") and each service; reflection of them all."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *services):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    names = (
        *services,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    return servicer
