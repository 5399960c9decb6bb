"""Tracing is off by default and picks its exporter from the configuration."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from server.tracing import make_exporter, make_provider


def test_off_means_no_tracing() -> None:
    assert make_exporter("off", "") is None
    assert make_provider("off", "", "custops") is None


def test_console_and_otlp_pick_their_exporters() -> None:
    assert isinstance(make_exporter("console", ""), ConsoleSpanExporter)
    otlp = make_exporter("otlp", "http://127.0.0.1:4317")
    assert isinstance(otlp, OTLPSpanExporter)
    otlp.shutdown()
    provider = make_provider("console", "", "custops")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "custops"
    provider.shutdown()
