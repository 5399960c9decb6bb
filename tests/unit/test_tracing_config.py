"""Tracing is off by default and picks its exporter from the configuration."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from server.telemetry import resource
from server.tracing import make_exporter, make_provider


def test_off_means_no_tracing() -> None:
    assert make_exporter("off", "") is None
    assert make_provider("off", "") is None


def test_console_and_otlp_pick_their_exporters() -> None:
    assert isinstance(make_exporter("console", ""), ConsoleSpanExporter)
    otlp = make_exporter("otlp", "http://127.0.0.1:4317")
    assert isinstance(otlp, OTLPSpanExporter)
    otlp.shutdown()
    provider = make_provider("console", "")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "custops"
    provider.shutdown()


def test_the_otel_variables_name_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win, as the
    specification says (before, "custops" overrode them)."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "custops-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    provider = make_provider("console", "")
    assert provider is not None
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "custops-eu"
    assert attributes["deployment.environment"] == "staging"
    provider.shutdown()
    assert resource().attributes["service.name"] == "custops-eu"  # the metrics' too
