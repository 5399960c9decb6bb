"""Per-caller rate limits on the public port: a caller over its rate gets
RESOURCE_EXHAUSTED with a retry delay while the others are served; with
Redis, the rate holds across replicas together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from custops.audit.v1 import audit_pb2 as apb
from custops.client import AsyncCustopsClient, CustopsError, RetryPolicy
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.auth.callers import new_token, token_hash
from tests.integration.conftest import settings

GREEDY, POLITE = new_token(), new_token()
BURST = 3


def _callers(path: Path) -> str:
    path.write_text(
        f"""
[[callers]]
name = "greedy"
roles = ["merchant_admin"]
shops = ["shop-1"]
token_sha256 = "{token_hash(GREEDY)}"
rate_per_second = 0.01
burst = {BURST}

[[callers]]
name = "polite"
roles = ["merchant_admin"]
shops = ["shop-1"]
token_sha256 = "{token_hash(POLITE)}"
"""
    )
    return str(path)


async def _list(platform: Platform, token: str, shop: str = "shop-1") -> grpc.StatusCode:
    async with AsyncCustopsClient(
        f"127.0.0.1:{platform.port}",
        retry=RetryPolicy(max_attempts=1),
        metadata=(("authorization", f"Bearer {token}"),),
    ) as client:
        try:
            await client.plans.list_plans(pb.ListPlansRequest(shop_id=shop)).first_page()
        except CustopsError as err:
            if err.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert err.reason == "CALLER_RATE_EXCEEDED"
                assert err.retry_delay is not None and err.retry_delay > 1, err.retry_delay
            return err.code
    return grpc.StatusCode.OK


@pytest.fixture
async def platforms(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Platform, Platform]]:
    """Two replicas over one database, sharing Redis (or, in process, each its own buckets)."""
    shared: dict[str, Any] = {"callers_file": _callers(tmp_path / "callers.toml")}
    if request.param == "redis":
        shared["redis_url"] = request.getfixturevalue("redis_url")
        shared["redis_prefix"] = request.getfixturevalue("redis_prefix") + tmp_path.name
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(2):
            platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/r.db", **shared))
            await platform.start()
            stack.push_async_callback(platform.stop, 1)
            started.append(platform)
        yield started[0], started[1]


@pytest.mark.parametrize("platforms", ["in-process", "redis"], indirect=True)
async def test_a_caller_over_its_rate_waits_and_the_others_are_served(
    platforms: tuple[Platform, Platform], request: pytest.FixtureRequest
) -> None:
    first, second = platforms
    ok, denied = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    # A refused call costs a token like any other.
    assert [await _list(first, GREEDY), await _list(first, GREEDY, "shop-2")] == [ok, denied]
    if "redis" in request.node.callspec.id:
        # One bucket for every replica: the third call of the burst, on the
        # other replica, is the last.
        assert await _list(second, GREEDY) == ok
        assert [await _list(first, GREEDY), await _list(second, GREEDY)] == [exhausted] * 2
    else:
        assert [await _list(first, GREEDY), await _list(first, GREEDY)] == [ok, exhausted]
    # Refused for its rate, a change is not in the audit log (which would grow
    # as fast as the caller keeps calling); other failed changes are.
    for token in (GREEDY, POLITE):
        async with AsyncCustopsClient(
            f"127.0.0.1:{first.port}",
            retry=RetryPolicy(max_attempts=1),
            metadata=(("authorization", f"Bearer {token}"),),
        ) as client:
            with pytest.raises(CustopsError):
                await client.plans.delete_plan(pb.DeletePlanRequest(shop_id="shop-1", plan_id="p9"))
    async with AsyncCustopsClient(
        f"127.0.0.1:{first.port}", metadata=(("authorization", f"Bearer {POLITE}"),)
    ) as reader:
        logged = (
            await reader.audit.list_audit_entries(
                apb.ListAuditEntriesRequest(shop_id="shop-1")
            ).first_page()
        ).entries
    assert [(e.caller, e.outcome) for e in logged] == [("polite", "NOT_FOUND")]
    # Meanwhile the other caller is served, as many times as its rate allows.
    assert [await _list(first, POLITE) for _ in range(20)] == [ok] * 20
    assert await _list(second, POLITE) == ok
