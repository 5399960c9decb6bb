"""What the server knows about the call being served, for the code it calls.

Set by the server interceptor, read by the downstream client interceptor, so
that the request id and the caller's deadline travel to downstream calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from domain.access import Caller

request_id: ContextVar[str] = ContextVar("custops_request_id", default="")
# The caller's W3C trace headers, passed on as they are when tracing is off,
# so a trace that runs through this service is not cut here.
trace_headers: ContextVar[tuple[tuple[str, str], ...]] = ContextVar(
    "custops_trace_headers", default=()
)
TRACE_HEADER_KEYS = ("traceparent", "tracestate")
# Who is calling, once authenticated; None when no callers are configured.
caller: ContextVar[Caller | None] = ContextVar("custops_caller", default=None)
# The method being served ("/package.Service/Method"); "" outside a call.
method: ContextVar[str] = ContextVar("custops_method", default="")
# Who makes the call's changes (create_by, update_by, the audit log): the
# authenticated caller, or with no callers configured what it says it is.
actor: ContextVar[str] = ContextVar("custops_actor", default="anonymous")
# time.monotonic() at which the caller's deadline expires; None = no deadline.
deadline: ContextVar[float | None] = ContextVar("custops_deadline", default=None)


def remaining(default: float) -> float:
    """Seconds a downstream call may take: the caller's remaining time, at most `default`."""
    expires = deadline.get()
    if expires is None:
        return default
    return max(0.0, min(default, expires - time.monotonic()))


@contextmanager
def platform_work(name: str) -> Iterator[None]:
    """Work the platform does by itself that the audit log records (a plan
    whose time is over ending): its caller is "platform", its method
    `custops.platform.Scheduler/<name>`."""
    tokens = (method.set(f"/custops.platform.Scheduler/{name}"), actor.set("platform"))
    try:
        yield
    finally:
        method.reset(tokens[0])
        actor.reset(tokens[1])
