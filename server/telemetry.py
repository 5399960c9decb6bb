"""What this process tells OpenTelemetry about itself: one resource for its
traces and its metrics, as the OTEL_* variables describe it.

OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win, as the specification
says; "custops" is only the name when neither gives one.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, Resource

DEFAULT_SERVICE_NAME = "custops"


def resource() -> Resource:
    detected = Resource.create()  # the SDK's defaults merged with OTEL_* variables
    name = str(detected.attributes.get(SERVICE_NAME, ""))
    if name and not name.startswith("unknown_service"):
        return detected
    return detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
