"""The server interceptor every call goes through, unary or streaming.

It gives the call a request id (the caller's `x-request-id`, or a new one)
and returns it in trailing metadata, records the caller's deadline for
downstream calls, and admits the call: who calls (bearer token or client
certificate), within its rate, a request that parses and stays within the
limits, and the RPC's rule (server/auth). It turns domain errors into rich
statuses (anything unexpected into a bare INTERNAL), writes a failed
state-changing call into the audit log, and writes one access-log line.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status
from opentelemetry import trace

from domain.access import Caller
from domain.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unimplemented,
)
from server import call_context
from server.auth.callers import Callers
from server.auth.rate_limits import RATE_EXCEEDED, CallerLimits
from server.auth.rules import RULES, named_resource
from server.errors import internal_status, status_of
from server.message_checks import request_violations
from server.metrics import NO_METRICS, Metrics
from server.persistence.audit_log import AuditLog

REQUEST_ID_KEY = "x-request-id"
ACTOR_KEY = "x-custops-actor"  # who a caller says it is, heeded without callers configured
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
# A call that brings no request id gets one: 32 hex digits, a random prefix
# of this process and a counter, unique across processes and restarts as a
# uuid4 is, without a trip to the kernel's random source on every call.
_ID_PREFIX = secrets.token_hex(10)
_id_counter = itertools.count()


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


log = logging.getLogger("custops.access")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def wrap_unary(
    handler: grpc.RpcMethodHandler | None,
    around: Callable[[Behavior], Behavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler | None:
    """The handler with its unary-unary behaviour wrapped (and its request
    deserializer, when given); streams pass as they are."""
    if handler is None or handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        around(handler.unary_unary),
        request_deserializer=deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


# Refused reads a caller may have audited in a burst, then one a second.
REFUSED_READS = 200


class PerCallerBudget:
    """A token bucket per caller, in this process: how many of something
    (audit entries of refused reads) a caller may cause."""

    def __init__(self, burst: int, per_second: float) -> None:
        self._burst, self._rate = burst, per_second
        self._left: dict[str, tuple[float, float]] = {}

    def admit(self, caller: str) -> bool:
        now = time.monotonic()
        left, since = self._left.get(caller, (float(self._burst), now))
        left = min(float(self._burst), left + (now - since) * self._rate)
        if left < 1:
            self._left[caller] = (left, now)
            return False
        self._left[caller] = (left - 1, now)
        return True


@dataclass(frozen=True)
class MalformedRequest:
    """Bytes that did not parse as the method's request message."""

    problem: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    # grpc answers a deserializer's exception with UNKNOWN and the exception's
    # text; handing the failure to the behaviour lets it answer INVALID_ARGUMENT.
    def parse(data: bytes) -> Any:
        if deserialize is None:
            return data
        try:
            return deserialize(data)
        except Exception as exc:
            return MalformedRequest(exc.__class__.__name__)

    return parse


# Asked without credentials: load balancers probe health, and grpcurl lists
# and describes through reflection (which describes, never serves, data).
_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def authenticate(callers: Callers, incoming: dict[str, Any], certificate: str | None) -> Caller:
    """The caller a request's bearer token names or, without a token, the one
    its verified client certificate names (common name); else UNAUTHENTICATED."""
    header = incoming.get("authorization")
    if not isinstance(header, str) or not header.strip():
        if certificate is not None:
            by_certificate = callers.with_certificate(certificate)
            if by_certificate is None:
                raise Unauthenticated(
                    f"the client certificate {certificate!r} is not one of this platform's callers",
                    reason="CREDENTIALS_UNKNOWN",
                )
            return by_certificate
        raise Unauthenticated(
            "this call needs credentials: metadata 'authorization: Bearer <token>' "
            "(docs/security.md)",
            reason="CREDENTIALS_MISSING",
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "the authorization metadata must be 'Bearer <token>'", reason="CREDENTIALS_MALFORMED"
        )
    caller = callers.with_token(token.strip())
    if caller is None:
        raise Unauthenticated(
            "the bearer token is not one of this platform's callers", reason="CREDENTIALS_UNKNOWN"
        )
    return caller


def certificate_name(context: grpc.aio.ServicerContext) -> str | None:
    """The common name of the client certificate the TLS handshake verified
    (gRPC's `x509_common_name` auth property), or None without one."""
    names = context.auth_context().get("x509_common_name") or ()
    for name in names:
        return bytes(name).decode("utf-8", "replace")
    return None


def authorize(caller: Caller, method: str, request: Any) -> None:
    """PermissionDenied unless the method's rule admits the caller; a method
    without a rule admits nobody."""
    rule = RULES.get(method)
    if rule is None:
        raise PermissionDenied(
            f"{method.lstrip('/')} has no access rule; nobody may call it", reason="NO_RULE"
        )
    rule.check(caller, request)


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        callers: Callers | None = None,
        audit: AuditLog | None = None,
        limits: CallerLimits | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        # None: nobody is asked for credentials (loopback only, server.config).
        self._callers = callers
        self._metrics = metrics
        self._audit = audit
        self._limits = limits
        self._refused_reads = PerCallerBudget(REFUSED_READS, 1.0)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        incoming = dict(details.invocation_metadata or ())
        parse = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, incoming),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method, incoming),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if self._callers is not None and not method.startswith(_OPEN):
            # A call that streams its requests (none of the public contracts
            # has one) is not served here (UNIMPLEMENTED) rather than unguarded.
            return None
        return handler

    async def _admit(
        self,
        method: str,
        incoming: dict[str, Any],
        request: Any,
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Raise unless the call may go on: who calls, whether it parsed,
        whether the caller may make it."""
        call_context.method.set(method)
        caller = None
        if self._callers is not None and not method.startswith(_OPEN):
            caller = authenticate(self._callers, incoming, certificate_name(context))
            call_context.caller.set(caller)
            call_context.actor.set(caller.name)
            if self._limits is not None:
                await self._limits.admit(caller)
        else:
            claimed = incoming.get(ACTOR_KEY)
            if isinstance(claimed, str) and claimed:
                call_context.actor.set(claimed[:200])
        if isinstance(request, MalformedRequest):
            raise InvalidArgument(
                [FieldViolation("request", f"is not a valid protobuf message ({request.problem})")],
                reason="MALFORMED_REQUEST",
            )
        if caller is not None:
            authorize(caller, method, request)
        problems = request_violations(request) if isinstance(request, Message) else []
        if problems:
            raise InvalidArgument(problems)

    async def _audit_failure(self, method: str, request: Any, code: grpc.StatusCode) -> None:
        """A state-changing call that failed, and a read refused to its
        caller (PERMISSION_DENIED), in the audit log: by a known caller only,
        so that anyone without credentials cannot fill it, and refused reads
        at most REFUSED_READS a caller in a burst, then one a second, so that
        a caller scanning other shops cannot flood it either."""
        rule = RULES.get(method)
        if self._audit is None or rule is None:
            return
        caller = call_context.caller.get()
        if self._callers is not None and caller is None:
            return
        if not rule.changes:
            refused = code is grpc.StatusCode.PERMISSION_DENIED and caller is not None
            if not refused or not self._refused_reads.admit(caller.name if caller else ""):
                return
        parsed = not isinstance(request, MalformedRequest)
        try:
            await self._audit.record(
                rule.shop_of(request) if parsed else "",
                named_resource(request) if parsed else "",
                code.name,
            )
        except Exception:  # the call's own answer matters more than its audit entry
            log.warning("could not audit the failed %s", method, exc_info=True)

    def _unary(self, inner: Behavior, method: str, incoming: dict[str, Any]) -> Behavior:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._guarded(method, incoming, request, context):
                return await inner(request, context)

        return behavior

    def _streaming(
        self,
        inner: Callable[[Any, grpc.aio.ServicerContext], Any],
        method: str,
        incoming: dict[str, Any],
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._guarded(method, incoming, request, context):
                responses = inner(request, context)
                if inspect.isawaitable(responses):
                    # A handler that writes with context.write() (health's Watch).
                    await responses
                    return
                async for response in responses:
                    yield response

        return behavior

    @asynccontextmanager
    async def _guarded(
        self,
        method: str,
        incoming: dict[str, Any],
        request: Any,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[None]:
        """Around one call, unary or streaming alike: its request id and
        deadline, admission, the status of whatever it raises (an error
        half-way through a stream included), the audit of a failed change,
        and the access-log line."""
        given = incoming.get(REQUEST_ID_KEY, "")
        request_id = given if _VALID_REQUEST_ID.match(given or "") else _new_request_id()
        call_context.request_id.set(request_id)
        call_context.trace_headers.set(
            tuple(
                (key, incoming[key])
                for key in call_context.TRACE_HEADER_KEYS
                if isinstance(incoming.get(key), str)
            )
        )
        remaining = context.time_remaining()
        call_context.deadline.set(None if remaining is None else time.monotonic() + remaining)
        trailing = ((REQUEST_ID_KEY, request_id),)
        context.set_trailing_metadata(trailing)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        audited = True
        try:
            try:
                await self._admit(method, incoming, request, context)
                yield
                return
            except DomainError as exc:
                failure = rpc_status.to_status(status_of(exc, request_id))
                # A caller over its rate is not written down: the log
                # would otherwise grow at whatever rate it keeps calling.
                audited = exc.reason != RATE_EXCEEDED
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except NotImplementedError:
                # The generated base servicer's answer for an RPC not built yet.
                missing = Unimplemented(f"{method.lstrip('/')} is not implemented yet")
                failure = rpc_status.to_status(status_of(missing, request_id))
            except Exception:
                log.exception("unexpected error in %s", method)
                failure = rpc_status.to_status(internal_status(request_id))
            code = failure.code
            if audited:
                await self._audit_failure(method, request, code)
            await context.abort(
                failure.code, failure.details, (*failure.trailing_metadata, *trailing)
            )
        finally:
            trace.get_current_span().set_attribute("rpc.grpc.status_code", code.value[0])
            took = time.perf_counter() - started
            # Every call's duration, here where its final status is known
            # (rpc.server.call.duration, by method and status code).
            self._metrics.served(method, code.name, took)
            if log.isEnabledFor(logging.INFO):  # the peer costs a call into grpc
                log.info(
                    "rpc",
                    extra={
                        "method": method,
                        "code": code.name,
                        "duration_ms": round(took * 1000, 2),
                        "peer": context.peer(),
                        "caller": getattr(call_context.caller.get(), "name", ""),
                    },
                )
