"""A run is one trace, however many batches, processes and restarts it takes.

When a run is made, its span (`plan run`) starts as a child of whatever
made it (the call that triggered or published, or nothing for the
scheduler), ends at once, and its W3C trace context is kept in the job's
payload. Every batch of the run, on whichever replica and after whichever
restart, is a span whose parent is that context, and the batch's downstream
calls (and the downstream systems' own spans) are its children. Spans live
in one process; the run's span marks when and why the run was made, and the
trace gathers everything done for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_KEY = "trace"  # in a job's payload: its run's trace context (traceparent)
_PROPAGATOR = TraceContextTextMapPropagator()


def begin(tracer: Tracer, payload: dict[str, Any], name: str, run_id: str) -> None:
    """The run's span, made and ended now, its context kept in `payload`."""
    attributes = {
        "custops.run_id": run_id,
        "custops.shop_id": str(payload.get("shop_id", "")),
        "custops.plan_id": str(payload.get("plan_id", "")),
    }
    with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attributes):
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
    if carrier:
        payload[TRACE_KEY] = carrier


@contextmanager
def batch(tracer: Tracer, payload: dict[str, Any], kind: str, **attributes: Any) -> Iterator[None]:
    """A span for one batch of a job, a child of its run's span when the
    job carries one (jobs made before tracing was on start a trace of their own)."""
    carrier = payload.get(TRACE_KEY)
    parent = _PROPAGATOR.extract(carrier) if isinstance(carrier, dict) else None
    with tracer.start_as_current_span(
        f"{kind} batch", context=parent, kind=SpanKind.INTERNAL, attributes=attributes
    ):
        yield
