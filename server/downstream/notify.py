"""domain.downstream_ports.MessageSender over custops.notify.v1.NotificationService."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from custops.notify.v1 import notify_pb2, notify_pb2_grpc
from domain.downstream_ports import Message, Refusal, Sent
from server.downstream.errors import call_errors
from server.downstream.wire import CHANNELS

SYSTEM = "notification service"
_WIRE_CHANNELS = {channel: wire for wire, channel in CHANNELS.items()}


class GrpcMessageSender:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = notify_pb2_grpc.NotificationServiceStub(channel)

    async def send(self, shop_id: str, messages: Sequence[Message]) -> list[Sent]:
        request = notify_pb2.BatchSendMessagesRequest(
            shop_id=shop_id, messages=[_message(m) for m in messages]
        )
        with call_errors(SYSTEM):
            response = await self._stub.BatchSendMessages(request)
        return [
            Sent(Refusal(r.failure_reason or "FAILED", r.retryable))
            if r.status == notify_pb2.SEND_STATUS_FAILED
            else Sent(None, r.message_id)
            for r in response.results
        ]


def _message(message: Message) -> notify_pb2.Message:
    return notify_pb2.Message(
        idempotency_key=message.key,
        member_id=message.member_id,
        channel=_WIRE_CHANNELS[message.channel],
        template_id=message.template_id,
        params=dict(message.params),
        source=message.source,
    )
