"""Authentication on the public port: with callers configured, every call
but health and reflection needs a bearer token one of them holds; without
callers the platform listens on loopback only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform, StartupError
from server.auth.callers import new_token, token_hash
from server.config import ConfigError
from tests.integration.conftest import settings

TOKEN = new_token()


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Platform]:
    callers = tmp_path / "callers.toml"
    callers.write_text(
        f"""
[[callers]]
name = "shop-1-admin"
roles = ["merchant_admin"]
shops = ["shop-1"]
token_sha256 = "{token_hash(TOKEN)}"
"""
    )
    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/a.db", callers_file=str(callers)))
    await platform.start()
    yield platform
    await platform.stop(grace=1)


async def _list(platform: Platform, *metadata: tuple[str, str]) -> pb.ListPlansResponse:
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", metadata=metadata) as client:
        response: pb.ListPlansResponse = await client.plans.list_plans(
            pb.ListPlansRequest(shop_id="shop-1")
        ).first_page()
        return response


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "CREDENTIALS_MISSING"),
        ((("authorization", f"Basic {TOKEN}"),), "CREDENTIALS_MALFORMED"),
        ((("authorization", "Bearer"),), "CREDENTIALS_MALFORMED"),
        ((("authorization", f"Bearer {new_token()}"),), "CREDENTIALS_UNKNOWN"),
        ((("authorization", f"Bearer {token_hash(TOKEN)}"),), "CREDENTIALS_UNKNOWN"),
    ],
)
async def test_a_call_without_a_known_token_is_unauthenticated(
    guarded: Platform, metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(CustopsError) as err:
        await _list(guarded, *metadata)
    assert err.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert err.value.reason == reason


async def test_a_known_token_is_served_and_health_needs_none(guarded: Platform) -> None:
    bearer = ("authorization", f"Bearer {TOKEN}")
    assert list((await _list(guarded, bearer)).plans) == []
    # The change is made by the caller the token names, whatever the caller claims.
    async with AsyncCustopsClient(
        f"127.0.0.1:{guarded.port}", metadata=(bearer, ("x-custops-actor", "mallory"))
    ) as client:
        created = await client.plans.create_plan(
            pb.CreatePlanRequest(shop_id="shop-1", plan=pb.Plan(display_name="by token"))
        )
    assert (created.plan.create_by, created.plan.update_by) == ("shop-1-admin", "shop-1-admin")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{guarded.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_public_address_without_callers_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a loopback address and no callers"):
        settings(f"sqlite+aiosqlite:///{tmp_path}/a.db", listen="0.0.0.0:0")
    # With callers configured, the same address is allowed.
    allowed = settings(
        f"sqlite+aiosqlite:///{tmp_path}/a.db", listen="0.0.0.0:0", callers_file="callers.toml"
    )
    assert allowed.listen == "0.0.0.0:0"


async def test_an_unusable_callers_file_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "callers.toml"
    bad.write_text('[[callers]]\nname = "x"\nroles = ["king"]\nshops = ["s"]\ncertificate = "c"\n')
    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/a.db", callers_file=str(bad)))
    with pytest.raises(StartupError, match=r"callers\[0\]\.roles"):
        await platform.start()
