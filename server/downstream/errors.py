"""A downstream system's gRPC failure -> the domain error the caller sees."""

from __future__ import annotations

import grpc

from domain.errors import DomainError, Unavailable, Unimplemented


def translate(system: str, error: grpc.aio.AioRpcError) -> DomainError:
    code = error.code()
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(f"the {system} does not offer this call yet: {error.details()}")
    # Everything else is the other system's trouble, not the caller's input:
    # UNAVAILABLE tells the caller that retrying later may help.
    return Unavailable(
        f"the {system} answered {code.name}: {error.details()}",
        reason=f"{system.upper().replace(' ', '_')}_{code.name}",
    )
