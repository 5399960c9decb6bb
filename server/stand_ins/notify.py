"""The message channel's stand-in: custops.notify.v1.NotificationService.

Messages are sent once per idempotency key (a repeat returns the first
message id); per-item failures are realistic and deterministic: unknown
members, official-account messages to non-followers, and SMS to the one
member in twenty without a reachable phone. What was delivered to whom is
kept for tests.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import grpc

from custops.notify.v1 import notify_pb2 as pb
from custops.notify.v1 import notify_pb2_grpc
from domain.ports import Clock
from server.downstream.wire import timestamp
from server.stand_ins.population import Population
from server.stand_ins.pressure import MAX_BATCH, Pressure

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass
class Outbox:
    """Sent messages: by key (for idempotency) and by member (for tests)."""

    by_key: dict[tuple[str, str], tuple[bytes, pb.SendResult]] = field(default_factory=dict)
    by_member: dict[tuple[str, str], list[pb.SentMessage]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class NotificationStub(notify_pb2_grpc.NotificationServiceServicer):
    def __init__(self, population: Population, pressure: Pressure, clock: Clock) -> None:
        self.population = population
        self.pressure = pressure
        self.clock = clock
        self.outbox = Outbox()

    async def BatchSendMessages(
        self, request: pb.BatchSendMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchSendMessagesResponse:
        if len(request.messages) > MAX_BATCH:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} messages")
        await self.pressure.admit(context, len(request.messages))
        results = [self._send(request.shop_id, m) for m in request.messages]
        await self.pressure.deliver(context)
        return pb.BatchSendMessagesResponse(results=results)

    def _send(self, shop_id: str, message: pb.Message) -> pb.SendResult:
        what = message.SerializeToString(deterministic=True)
        kept = self.outbox.by_key.get((shop_id, message.idempotency_key))
        if kept is not None:
            if kept[0] != what:
                return self._failed(
                    message, "IDEMPOTENCY_KEY_REUSED", "key used for another message"
                )
            self.pressure.item_duplicate()
            first = pb.SendResult()
            first.CopyFrom(kept[1])
            first.status = pb.SEND_STATUS_DUPLICATE
            return first
        problem = self._problem(shop_id, message)
        if problem is not None:
            return self._failed(message, *problem)
        result = pb.SendResult(
            idempotency_key=message.idempotency_key,
            status=pb.SEND_STATUS_SENT,
            message_id=f"msg-{next(self.outbox.ids):010d}",
        )
        self.outbox.by_key[(shop_id, message.idempotency_key)] = (what, result)
        sent = pb.SentMessage(
            message_id=result.message_id, message=message, send_time=timestamp(self.clock.now())
        )
        self.outbox.by_member.setdefault((shop_id, message.member_id), []).append(sent)
        self.pressure.item_succeeded()
        return result

    def _problem(self, shop_id: str, m: pb.Message) -> tuple[str, str] | None:
        if not m.idempotency_key or not m.template_id:
            return "INVALID_MESSAGE", "idempotency_key and template_id are required"
        if (
            m.channel == pb.MESSAGE_CHANNEL_UNSPECIFIED
            or m.channel not in pb.MessageChannel.values()
        ):
            return "INVALID_MESSAGE", "channel is required"
        index = self.population.index_of(m.member_id, shop_id)
        if index is None:
            return "MEMBER_NOT_FOUND", f"no member {m.member_id!r}"
        if (
            m.channel == pb.MESSAGE_CHANNEL_OFFICIAL_ACCOUNT
            and not self.population.member(shop_id, index).follower
        ):
            return "NOT_A_FOLLOWER", "official-account messages reach followers only"
        if m.channel == pb.MESSAGE_CHANNEL_SMS and not sms_reachable(shop_id, m.member_id):
            return "MEMBER_UNREACHABLE", "no reachable phone number"
        return None

    def _failed(self, m: pb.Message, reason: str, text: str) -> pb.SendResult:
        self.pressure.item_failed(reason)
        return pb.SendResult(
            idempotency_key=m.idempotency_key,
            status=pb.SEND_STATUS_FAILED,
            failure_reason=reason,
            failure_message=text,
            retryable=False,
        )

    async def ListSentMessages(
        self, request: pb.ListSentMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSentMessagesResponse:
        if request.page_size < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be >= 0")
        await self.pressure.admit(context, 1)
        token = request.page_token
        if token and not (token.startswith("msg-") and token[4:].isascii() and token[4:].isdigit()):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token: not a token of ours")
        # Newest first; the token is the last message id of the previous page.
        sent = [
            m
            for m in reversed(self.outbox.by_member.get((request.shop_id, request.member_id), []))
            if not token or m.message_id < token
        ]
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = sent[:size]
        return pb.ListSentMessagesResponse(
            messages=page, next_page_token=page[-1].message_id if len(sent) > size else ""
        )


def sms_reachable(shop_id: str, member_id: str) -> bool:
    """One member in twenty has no phone number an SMS reaches (fixed per member)."""
    return _digest(shop_id, member_id) % 20 != 0


def _digest(shop_id: str, member_id: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"{shop_id}:{member_id}".encode(), digest_size=4).digest()
    )
