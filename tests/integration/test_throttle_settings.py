"""Throttle settings through the server: in process, and shared through Redis."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.integration.conftest import settings


async def _exercise(client: AsyncCustopsClient) -> None:
    listed = (await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest())).settings
    by = {pb.Downstream.Name(s.downstream): s for s in listed}
    assert set(by) == {"DOWNSTREAM_AUDIENCE", "DOWNSTREAM_BENEFIT", "DOWNSTREAM_NOTIFICATION"}
    benefit = by["DOWNSTREAM_BENEFIT"]
    assert benefit.effective_rate_per_second == benefit.rate_per_second > 0
    update = pb.UpdateThrottleSettingRequest(
        setting=pb.ThrottleSetting(
            downstream=pb.DOWNSTREAM_BENEFIT, rate_per_second=250, etag=benefit.etag
        ),
        update_mask=FieldMask(paths=["rate_per_second"]),
        request_id="slow-down",
    )
    changed = (await client.plans.update_throttle_setting(update)).setting
    assert (changed.rate_per_second, changed.burst) == (250, benefit.burst)
    # The same request again replays its first answer (its etag is stale now:
    # done again, it would be ABORTED).
    assert (await client.plans.update_throttle_setting(update)).setting == changed
    with pytest.raises(CustopsError) as err:  # the etag read before the change is stale now
        await client.plans.update_throttle_setting(
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(
                    downstream=pb.DOWNSTREAM_BENEFIT, rate_per_second=1, etag=benefit.etag
                ),
                update_mask=FieldMask(paths=["rate_per_second"]),
            )
        )
    assert err.value.code is grpc.StatusCode.ABORTED
    with pytest.raises(CustopsError) as err:
        await client.plans.update_throttle_setting(
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(rate_per_second=-1, burst=0),
            )
        )
    assert {v.field for v in err.value.field_violations} == {
        "setting.downstream",
        "setting.rate_per_second",
        "setting.burst",
    }


async def _exercise_shares(client: AsyncCustopsClient) -> None:
    """A shop's share is a weight (1 unless set); a rate or burst on it, or a
    weight on a downstream's own setting, is refused by name."""
    mine = (
        await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest(shop_id="s9"))
    ).settings
    share = next(s for s in mine if s.shop_id == "s9" and s.downstream == pb.DOWNSTREAM_BENEFIT)
    assert (share.weight, share.rate_per_second, share.burst) == (1, 0, 0)
    # Nobody runs: the shop would have the whole (effective) rate.
    platform = next(s for s in mine if not s.shop_id and s.downstream == pb.DOWNSTREAM_BENEFIT)
    assert share.effective_rate_per_second == platform.effective_rate_per_second
    weighted = (
        await client.plans.update_throttle_setting(
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(
                    downstream=pb.DOWNSTREAM_BENEFIT, shop_id="s9", weight=3, etag=share.etag
                ),
                request_id="s9-weight",
            )
        )
    ).setting
    assert (weighted.shop_id, weighted.weight) == ("s9", 3) and weighted.etag != share.etag
    again = (
        await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest(shop_id="s9"))
    ).settings
    assert weighted in again
    for wrong, field in [
        (
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(
                    downstream=pb.DOWNSTREAM_BENEFIT, shop_id="s9", rate_per_second=5
                ),
                update_mask=FieldMask(paths=["rate_per_second"]),
            ),
            "update_mask.paths[0]",
        ),
        (
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(downstream=pb.DOWNSTREAM_BENEFIT, shop_id="s9")
            ),
            "setting.weight",
        ),
        (
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(downstream=pb.DOWNSTREAM_BENEFIT, weight=2),
                update_mask=FieldMask(paths=["weight"]),
            ),
            "update_mask.paths[0]",
        ),
    ]:
        with pytest.raises(CustopsError) as err:
            await client.plans.update_throttle_setting(wrong)
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in err.value.field_violations] == [field]


async def test_throttle_settings_in_process(tmp_path: Path) -> None:
    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            await _exercise(client)
            await _exercise_shares(client)
    finally:
        await platform.stop(grace=1)


@pytest.mark.redis
async def test_a_rate_set_on_one_replica_holds_on_another(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    # Replicas share the database (the settings' source of truth) and Redis.
    replicas = [
        Platform(
            settings(
                f"sqlite+aiosqlite:///{tmp_path}/shared.db",
                redis_url=redis_url,
                redis_prefix=redis_prefix,
            )
        )
        for _ in range(2)
    ]
    for replica in replicas:
        await replica.start()
    try:
        async with (
            AsyncCustopsClient(f"127.0.0.1:{replicas[0].port}") as first,
            AsyncCustopsClient(f"127.0.0.1:{replicas[1].port}") as second,
        ):
            await _exercise(first)
            await _exercise_shares(first)
            theirs = (
                await second.plans.get_throttle_settings(
                    pb.GetThrottleSettingsRequest(shop_id="s9")
                )
            ).settings
            assert any(s.shop_id == "s9" and s.weight == 3 for s in theirs)
            seen = (
                await second.plans.get_throttle_settings(pb.GetThrottleSettingsRequest())
            ).settings
            benefit = next(s for s in seen if s.downstream == pb.DOWNSTREAM_BENEFIT)
            assert benefit.rate_per_second == 250
    finally:
        for replica in replicas:
            await replica.stop(grace=1)


async def test_a_restarted_server_keeps_the_rates_it_was_given(tmp_path: Path) -> None:
    """The database holds the settings: a server started again (in process,
    without Redis) throttles at the rate set before, not at the default."""
    url = f"sqlite+aiosqlite:///{tmp_path}/kept.db"
    for run in range(2):
        platform = Platform(settings(url))
        await platform.start()
        try:
            async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
                if run == 0:
                    await client.plans.update_throttle_setting(
                        pb.UpdateThrottleSettingRequest(
                            setting=pb.ThrottleSetting(
                                downstream=pb.DOWNSTREAM_BENEFIT, rate_per_second=321, burst=7
                            )
                        )
                    )
                seen = (
                    await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest())
                ).settings
            benefit = next(s for s in seen if s.downstream == pb.DOWNSTREAM_BENEFIT)
            assert (benefit.rate_per_second, benefit.burst) == (321, 7), run
            assert platform.buckets is not None
            settings_in_force, _ = await platform.buckets.settings("benefit")
            assert (settings_in_force.rate, settings_in_force.capacity) == (321, 7), run
        finally:
            await platform.stop(grace=1)
