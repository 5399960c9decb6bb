"""OpenTelemetry tracing: one server span per RPC and one client span per
downstream call (opentelemetry-instrumentation-grpc, with the W3C trace
context in the metadata), a trace per run (server.run_traces).

Off by default; `CUSTOPS_TRACING=console|otlp` turns it on, and the
standard OTEL_* variables (service name, resource attributes, the OTLP
endpoint and headers, the sampler: OTEL_TRACES_SAMPLER and its argument)
apply as the OpenTelemetry specification says.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NoOpTracer, Tracer

from server import call_context
from server.interceptors import REQUEST_ID_KEY
from server.metrics import NO_METRICS, Metrics
from server.telemetry import resource

# The OTLP endpoint the specification's variables name, which win over
# CUSTOPS_OTLP_ENDPOINT.
_OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def make_exporter(mode: str, otlp_endpoint: str) -> SpanExporter | None:
    """The exporter CUSTOPS_TRACING asks for: none, the console, or OTLP/gRPC."""
    if mode == "off":
        return None
    if mode == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if any(os.environ.get(v) for v in _OTLP_VARIABLES):
        return OTLPSpanExporter()
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


class DownstreamInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Passes the caller's request id and remaining deadline on to a
    downstream system, and records the call's duration by method and status
    (rpc.client.call.duration). The client span and its trace context are
    opentelemetry-instrumentation-grpc's (`client_interceptors`, before this
    one); with tracing off, the caller's own trace headers are passed on as
    they came, so a trace begun before custops goes on after it."""

    def __init__(
        self, tracing: bool, default_timeout: float, metrics: Metrics = NO_METRICS
    ) -> None:
        self._tracing = tracing
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
            return await self._call(continuation, details, request, timeout)
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

    async def _call(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
        timeout: float,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if not self._tracing:
            for key, value in call_context.trace_headers.get():
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


def tracer_of(provider: TracerProvider | None) -> Tracer:
    """The tracer of custops' own spans (runs, batches); a no-op one when
    tracing is off."""
    return NoOpTracer() if provider is None else provider.get_tracer("custops")


def server_interceptors(provider: TracerProvider | None) -> list[grpc.aio.ServerInterceptor]:
    """A server span per call, in the caller's trace (W3C trace context in
    the metadata): opentelemetry-instrumentation-grpc's."""
    if provider is None:
        return []
    return [aio_server_interceptor(tracer_provider=provider)]  # type: ignore[no-untyped-call]


def client_interceptors(provider: TracerProvider | None) -> list[Any]:
    """A client span per downstream call, its context passed on in the metadata."""
    if provider is None:
        return []
    return list(aio_client_interceptors(tracer_provider=provider))  # type: ignore[no-untyped-call]


__all__ = [
    "DownstreamInterceptor",
    "client_interceptors",
    "make_exporter",
    "make_provider",
    "server_interceptors",
    "tracer_of",
]
