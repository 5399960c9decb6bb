"""The message channel stand-in through gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from custops.audience.v1 import audience_pb2
from custops.notify.v1 import notify_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2 as admin
from tests.integration.stubs_fixture import StubClients


def message(
    key: str, member: str = "m00000001", channel: int = pb.MESSAGE_CHANNEL_IN_APP
) -> pb.Message:
    return pb.Message(
        idempotency_key=key,
        member_id=member,
        channel=channel,  # type: ignore[arg-type]
        template_id="birthday",
        params={"name": "小明"},
    )


async def send(s: StubClients, *messages: pb.Message) -> list[pb.SendResult]:
    reply = await s.notify.BatchSendMessages(
        pb.BatchSendMessagesRequest(shop_id="s1", messages=messages)
    )
    return list(reply.results)


async def test_concurrent_duplicates_send_once(stubs: StubClients) -> None:
    results = await asyncio.gather(*(send(stubs, message("run-1/m1")) for _ in range(50)))
    flat = [r for batch in results for r in batch]
    assert sorted(pb.SendStatus.Name(r.status) for r in flat) == (
        ["SEND_STATUS_DUPLICATE"] * 49 + ["SEND_STATUS_SENT"]
    )
    assert len({r.message_id for r in flat}) == 1
    delivered = await stubs.notify.ListSentMessages(
        pb.ListSentMessagesRequest(shop_id="s1", member_id="m00000001")
    )
    assert [m.message.params["name"] for m in delivered.messages] == ["小明"]


async def test_failures_are_per_message_with_reasons(stubs: StubClients) -> None:
    profiles = await stubs.audience.BatchGetMemberProfiles(
        audience_pb2.BatchGetMemberProfilesRequest(
            shop_id="s1", member_ids=[f"m{i:08d}" for i in range(40)]
        )
    )
    non_follower = next(p.member_id for p in profiles.profiles if not p.follower)
    results = await send(
        stubs,
        message("a", member="nobody"),
        message("b", member=non_follower, channel=pb.MESSAGE_CHANNEL_OFFICIAL_ACCOUNT),
        message("c", channel=pb.MESSAGE_CHANNEL_UNSPECIFIED),
        message("d"),
        message("d", member="m00000002"),  # the key of the message just sent
    )
    assert [r.failure_reason for r in results] == [
        "MEMBER_NOT_FOUND",
        "NOT_A_FOLLOWER",
        "INVALID_MESSAGE",
        "",
        "IDEMPOTENCY_KEY_REUSED",
    ]
    assert results[3].status == pb.SEND_STATUS_SENT
    unreachable = [
        r
        for r in await send(
            stubs, *(message(f"sms-{i}", f"m{i:08d}", pb.MESSAGE_CHANNEL_SMS) for i in range(200))
        )
        if r.status == pb.SEND_STATUS_FAILED
    ]
    assert unreachable and {r.failure_reason for r in unreachable} == {"MEMBER_UNREACHABLE"}


async def test_lost_response_and_capacity(stubs: StubClients) -> None:
    await stubs.admin.UpdateStubSettings(
        admin.UpdateStubSettingsRequest(
            settings=admin.StubSettings(
                system=admin.STUB_SYSTEM_NOTIFICATION, faults=admin.Faults(lost_response_rate=1)
            ),
            update_mask=FieldMask(paths=["faults.lost_response_rate"]),
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(stubs, message("lost"))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    await stubs.admin.UpdateStubSettings(
        admin.UpdateStubSettingsRequest(
            settings=admin.StubSettings(
                system=admin.STUB_SYSTEM_NOTIFICATION,
                capacity=admin.Capacity(items_per_second=1, burst=5000),
            ),
            update_mask=FieldMask(
                paths=["faults.lost_response_rate", "capacity.items_per_second", "capacity.burst"]
            ),
        )
    )
    (retry,) = await send(stubs, message("lost"))
    assert retry.status == pb.SEND_STATUS_DUPLICATE  # it had been sent
    await send(stubs, *(message(f"bulk-{i}") for i in range(4999)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(stubs, message("one-too-many"))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
