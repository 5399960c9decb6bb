"""What every gRPC server here carries besides its services: health per
service and server reflection (v1alpha, which grpcurl falls back to).

Reflection describes only what the port serves: its services and the
messages and enums they reach. Everything else the process has loaded (the
stand-ins' services, messages only they use) is NOT_FOUND to it, so that
the public port tells a caller nothing about the systems behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer


async def add_health_and_reflection(
    server: grpc.aio.Server, services: tuple[str, ...]
) -> health.aio.HealthServicer:
    """Health SERVING for the server ("") and each service; reflection of them all."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, generic_only(server))
    for name in ("", *services):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    names = (
        *services,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        ReflectionServicer(names, pool=served_pool(names)), generic_only(server)
    )
    return servicer


class _GenericHandlersOnly:
    """What a generated `add_…Servicer_to_server` needs of a server, adding
    the service's methods as generic handlers only.

    Generated code also registers each method with the server, and grpc.aio's
    server (grpcio 1.85) then keeps one pending request per registered method
    and, for every call it accepts, waits on all of them again: an
    `asyncio.wait` over some forty futures, about a fifth of a health check's
    CPU here. Generic handlers serve the same methods with one pending request."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: object) -> None:
        """Left unregistered on purpose (above)."""


def generic_only(server: grpc.aio.Server) -> grpc.aio.Server:
    """The server as generated code sees it: its methods as generic handlers."""
    return cast(grpc.aio.Server, _GenericHandlersOnly(server))


def served_pool(services: Iterable[str]) -> descriptor_pool.DescriptorPool:
    """A descriptor pool of these services and the top-level messages and
    enums they reach, in their own files (which keep their dependencies, so
    that every type resolves), and nothing else."""
    source = descriptor_pool.Default()
    wanted = [source.FindServiceByName(name) for name in services]
    kept: set[str] = set()  # full names of top-level messages and enums
    pending: list[Descriptor | EnumDescriptor] = []
    for service in wanted:
        for method in service.methods:
            pending += [method.input_type, method.output_type]
    while pending:
        item = pending.pop()
        top = _top_level(item)
        if top.full_name in kept:
            continue
        kept.add(top.full_name)
        if isinstance(top, Descriptor):
            pending += _reached(top)
    serving = {s.full_name for s in wanted}
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for service in wanted:
        _collect(service.file, kept, serving, files)
    pool = descriptor_pool.DescriptorPool()
    for proto in files.values():  # dependencies first (_collect adds them first)
        pool.Add(proto)
    return pool


def _top_level(item: Descriptor | EnumDescriptor) -> Descriptor | EnumDescriptor:
    while item.containing_type is not None:
        item = item.containing_type
    return item


def _reached(message: Descriptor) -> list[Descriptor | EnumDescriptor]:
    """The types a message's fields (its nested messages' too) name."""
    out: list[Descriptor | EnumDescriptor] = []
    for field in message.fields:
        if field.message_type is not None:
            out.append(field.message_type)
        if field.enum_type is not None:
            out.append(field.enum_type)
    for nested in message.nested_types:
        out += _reached(nested)
    return out


def _collect(
    file: FileDescriptor,
    kept: set[str],
    serving: set[str],
    files: dict[str, descriptor_pb2.FileDescriptorProto],
) -> None:
    if file.name in files:
        return
    for dependency in file.dependencies:
        _collect(dependency, kept, serving, files)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    prefix = f"{proto.package}." if proto.package else ""
    for field_name in ("message_type", "enum_type", "service"):
        listed = getattr(proto, field_name)
        chosen = kept if field_name != "service" else serving
        keep = [item for item in listed if prefix + item.name in chosen]
        del listed[:]
        listed.extend(keep)
    files[file.name] = proto
