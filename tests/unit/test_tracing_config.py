"""Tracing is off by default and picks its exporter from the configuration."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from server.tracing import make_provider


def test_off_means_no_provider() -> None:
    assert make_provider("off", "", "custops") is None


def test_console_and_otlp_make_providers() -> None:
    for mode in ("console", "otlp"):
        provider = make_provider(mode, "http://127.0.0.1:4317", "custops")
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "custops"
        provider.shutdown()
