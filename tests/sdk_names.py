"""Calling the SDK by an RPC's name, for tests that enumerate the RPCs from
the descriptors: the snake_case method (the CamelCase ones are deprecated),
named by the generator's own rule, and a list call's pager as its first
page, the one call the test made."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from custops.client import AsyncPager, Pager

_PATH = Path(__file__).resolve().parent.parent / "scripts" / "gen_sdk.py"
_spec = importlib.util.spec_from_file_location("custops_gen_sdk", _PATH)
assert _spec is not None and _spec.loader is not None
_gen_sdk = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _gen_sdk  # its dataclasses look their module up there
_spec.loader.exec_module(_gen_sdk)


def sdk_method(service: Any, rpc: str) -> Any:
    """`service`'s method for the RPC named `rpc` (CreatePlan -> create_plan)."""
    method = getattr(service, _gen_sdk.snake(rpc))

    def call(request: Any, **options: Any) -> Any:
        answer = method(request, **options)
        return answer.first_page() if isinstance(answer, (Pager, AsyncPager)) else answer

    return call
