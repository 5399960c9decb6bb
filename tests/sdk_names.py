"""Calling the SDK by an RPC's name, for tests that enumerate the RPCs from
the descriptors: the snake_case method (the CamelCase ones are deprecated),
and a list call's pager as its first page, the one call the test made."""

from __future__ import annotations

import re
from typing import Any

from custops.client import AsyncPager, Pager


def sdk_method(service: Any, rpc: str) -> Any:
    """`service`'s method for the RPC named `rpc` (CreatePlan -> create_plan)."""
    method = getattr(service, re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", rpc).lower())

    def call(request: Any, **options: Any) -> Any:
        answer = method(request, **options)
        return answer.first_page() if isinstance(answer, (Pager, AsyncPager)) else answer

    return call
