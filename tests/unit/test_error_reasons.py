"""Every reason the server can put in an ErrorInfo is in the contracts' one
list (custops.errors.v1.ErrorReason), which the SDKs carry as constants: a
reason raised and not listed is a reason no caller can branch on."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

import domain.errors
from domain.held_benefits import BenefitState
from server.auth.rate_limits import RATE_EXCEEDED
from server.downstream import audience, benefit, notify
from server.downstream.errors import CallFailed
from server.errors import LISTED_REASONS, internal_status
from server.persistence.tables import CANCELLED, PAUSED

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {
    name
    for name, kind in inspect.getmembers(domain.errors, inspect.isclass)
    if issubclass(kind, domain.errors.DomainError)
}


def _literal_reasons() -> dict[str, str]:
    """reason="X" given to a domain error, and each error class's own reason."""
    found: dict[str, str] = {}
    for path in [*ROOT.glob("domain/**/*.py"), *ROOT.glob("server/**/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ERRORS:
                for keyword in node.keywords:
                    value = keyword.value
                    if keyword.arg == "reason" and isinstance(value, ast.Constant):
                        found[str(value.value)] = f"{path.relative_to(ROOT)}:{node.lineno}"
    for kind in ERRORS:
        found[getattr(domain.errors, kind).reason] = f"domain/errors.py {kind}"
    return found


def test_every_literal_reason_is_listed() -> None:
    found = _literal_reasons()
    assert len(found) > 40  # the scan sees the code
    unlisted = {reason: where for reason, where in found.items() if reason not in LISTED_REASONS}
    assert not unlisted, f"add these to protos/custops/errors/v1/error_reason.proto: {unlisted}"


def test_every_composed_reason_is_listed() -> None:
    composed = {RATE_EXCEEDED, "NOT_IN_EFFECT", "OUTSIDE_TERM", "TERM_OVER", "NO_FIRE_AHEAD"}
    composed |= {f"BENEFIT_{s.name}" for s in BenefitState if s is not BenefitState.UNUSED}
    composed |= {f"RUN_{state.upper()}" for state in (CANCELLED, PAUSED)}
    for system in (audience.SYSTEM, benefit.SYSTEM, notify.SYSTEM):
        for code in grpc.StatusCode:
            if code is not grpc.StatusCode.OK:
                composed.add(CallFailed(system, code, "x").domain_error().reason)
    composed.add(_reason_of(internal_status("r")))
    assert composed - LISTED_REASONS == set()


def _reason_of(status: status_pb2.Status) -> str:
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return str(info.reason)


def test_each_downstream_system_has_four_reasons() -> None:
    said = {
        CallFailed(benefit.SYSTEM, code, "x").domain_error().reason
        for code in grpc.StatusCode
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED)
    }
    assert said == {
        "BENEFIT_PLATFORM_UNAVAILABLE",
        "BENEFIT_PLATFORM_DEADLINE_EXCEEDED",
        "BENEFIT_PLATFORM_RESOURCE_EXHAUSTED",
        "BENEFIT_PLATFORM_REFUSED",
    }
