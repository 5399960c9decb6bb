"""OpenTelemetry tracing: one server span per RPC, one client span per
downstream call, with the W3C trace context passed on in metadata.

Off by default; `CUSTOPS_TRACING=console|otlp` turns it on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from server import call_context
from server.interceptors import REQUEST_ID_KEY, Behavior, wrap_unary
from server.metrics import NO_METRICS, Metrics
from server.telemetry import resource

_PROPAGATOR = TraceContextTextMapPropagator()


def make_exporter(mode: str, otlp_endpoint: str) -> SpanExporter | None:
    """The exporter CUSTOPS_TRACING asks for: none, the console, or OTLP/gRPC."""
    if mode == "off":
        return None
    if mode == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=otlp_endpoint)


def make_provider(mode: str, otlp_endpoint: str) -> TracerProvider | None:
    """Spans of this process, described as OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES say (server.telemetry)."""
    exporter = make_exporter(mode, otlp_endpoint)
    if exporter is None:
        return None
    provider = TracerProvider(resource=resource())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class TracingServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        carrier = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        return wrap_unary(handler, lambda inner: self._around(inner, details.method, carrier))

    def _around(self, inner: Behavior, method: str, carrier: dict[str, str]) -> Behavior:
        service, name = _split(method)

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            parent = _PROPAGATOR.extract(carrier)
            with self._tracer.start_as_current_span(
                method.lstrip("/"),
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            ) as span:
                try:
                    return await inner(request, context)
                finally:
                    code = context.code()
                    if code not in (None, grpc.StatusCode.OK):
                        span.set_status(Status(StatusCode.ERROR, code.name))

        return behavior


class DownstreamInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Passes the caller's trace context, request id and remaining deadline on
    to a downstream system, with a client span around the call, and records
    its duration by method and status (rpc.client.call.duration)."""

    def __init__(
        self, tracer: Tracer | None, default_timeout: float, metrics: Metrics = NO_METRICS
    ) -> None:
        self._tracer = tracer
        self._default_timeout = default_timeout
        self._metrics = metrics

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        timeout = details.timeout if details.timeout is not None else self._default_timeout
        timeout = call_context.remaining(timeout)
        started = time.perf_counter()
        code = "OK"
        try:
            return await self._traced(continuation, details, request, timeout, method)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "UNKNOWN"
            raise
        finally:
            self._metrics.called(method, code, time.perf_counter() - started)

    async def _traced(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
        timeout: float,
        method: str,
    ) -> Any:
        if self._tracer is None:
            return await self._call(continuation, details, request, timeout)
        service, name = _split(method)
        with self._tracer.start_as_current_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        ) as span:
            try:
                return await self._call(continuation, details, request, timeout)
            except grpc.aio.AioRpcError as exc:
                span.set_status(Status(StatusCode.ERROR, exc.code().name))
                span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
                raise

    async def _call(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
        timeout: float,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        carrier: dict[str, str] = {}
        if self._tracer is None:
            carrier.update(call_context.trace_headers.get())
        else:
            _PROPAGATOR.inject(carrier, context=otel_context.get_current())
        for key, value in carrier.items():
            metadata[key] = value
        request_id = call_context.request_id.get()
        if request_id:
            metadata[REQUEST_ID_KEY] = request_id
        new_details = grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )
        call = await continuation(new_details, request)
        return await call


def tracer_of(provider: TracerProvider | None) -> Tracer | None:
    return None if provider is None else provider.get_tracer("custops")


__all__ = [
    "DownstreamInterceptor",
    "TracingServerInterceptor",
    "make_exporter",
    "make_provider",
    "trace",
    "tracer_of",
]
