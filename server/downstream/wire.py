"""What the downstream contracts share on the wire: instants, benefit kinds
and message channels. The public API embeds the same messages, so its
mapping (server.mapping) uses these too."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from custops.benefit.v1 import benefit_pb2
from custops.notify.v1 import notify_pb2
from domain.plan import BenefitKind, MessageChannel

BENEFIT_KINDS = {
    benefit_pb2.BENEFIT_KIND_UNSPECIFIED: BenefitKind.UNSPECIFIED,
    benefit_pb2.BENEFIT_KIND_POINTS: BenefitKind.POINTS,
    benefit_pb2.BENEFIT_KIND_COUPON: BenefitKind.COUPON,
    benefit_pb2.BENEFIT_KIND_FREE_SHIPPING: BenefitKind.FREE_SHIPPING,
    benefit_pb2.BENEFIT_KIND_DISCOUNT: BenefitKind.DISCOUNT,
    benefit_pb2.BENEFIT_KIND_POINTS_MULTIPLIER: BenefitKind.POINTS_MULTIPLIER,
    benefit_pb2.BENEFIT_KIND_GIFT: BenefitKind.GIFT,
    benefit_pb2.BENEFIT_KIND_PAID_CONTENT: BenefitKind.PAID_CONTENT,
    benefit_pb2.BENEFIT_KIND_EXPERIENCE_CARD: BenefitKind.EXPERIENCE_CARD,
    benefit_pb2.BENEFIT_KIND_GROWTH_VALUE: BenefitKind.GROWTH_VALUE,
    benefit_pb2.BENEFIT_KIND_PACKAGE: BenefitKind.PACKAGE,
}
CHANNELS = {
    notify_pb2.MESSAGE_CHANNEL_UNSPECIFIED: MessageChannel.UNSPECIFIED,
    notify_pb2.MESSAGE_CHANNEL_SMS: MessageChannel.SMS,
    notify_pb2.MESSAGE_CHANNEL_OFFICIAL_ACCOUNT: MessageChannel.OFFICIAL_ACCOUNT,
    notify_pb2.MESSAGE_CHANNEL_APP_PUSH: MessageChannel.APP_PUSH,
    notify_pb2.MESSAGE_CHANNEL_IN_APP: MessageChannel.IN_APP,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    """As Timestamp.FromDatetime (a naive value is UTC), in a third of its
    time: pages carry several."""
    since = value - (_EPOCH if value.tzinfo is not None else _EPOCH.replace(tzinfo=None))
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)
