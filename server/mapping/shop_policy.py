"""A shop's policy on the wire."""

from __future__ import annotations

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation
from domain.plan import MessageChannel
from domain.shop_policy import ContactLimit, ContactWindow, ShopPolicy
from server.downstream.wire import CHANNELS, timestamp

WINDOWS = {
    pb.CONTACT_WINDOW_DAY: ContactWindow.DAY,
    pb.CONTACT_WINDOW_WEEK: ContactWindow.WEEK,
    pb.CONTACT_WINDOW_MONTH: ContactWindow.MONTH,
}
_WINDOWS_BACK = {w: n for n, w in WINDOWS.items()}
_CHANNELS_BACK = {c: n for n, c in CHANNELS.items()}


def limits_from_proto(
    limits: list[pb.ContactLimit], violations: list[FieldViolation]
) -> tuple[ContactLimit, ...]:
    """The limits a request sends; what cannot be read is a violation."""
    out = []
    for i, limit in enumerate(limits):
        channel = CHANNELS.get(limit.channel)
        window = WINDOWS.get(limit.window)
        if channel is None:
            violations.append(
                FieldViolation(f"policy.contact_limits[{i}].channel", "unknown channel")
            )
        if window is None:
            violations.append(
                FieldViolation(f"policy.contact_limits[{i}].window", "required: DAY, WEEK or MONTH")
            )
        out.append(
            ContactLimit(
                channel or MessageChannel.UNSPECIFIED,
                limit.max_messages,
                window or ContactWindow.DAY,
                limit.caps_grants,
            )
        )
    return tuple(out)


def policy_to_proto(policy: ShopPolicy) -> pb.ShopPolicy:
    out = pb.ShopPolicy(
        shop_id=policy.shop_id,
        etag=policy.etag,
        update_by=policy.update_by,
        approval_threshold=policy.approval_threshold,
        contact_limits=[
            pb.ContactLimit(
                channel=_CHANNELS_BACK[lim.channel],
                max_messages=lim.max_messages,
                window=_WINDOWS_BACK[lim.window],
                caps_grants=lim.caps_grants,
            )
            for lim in policy.contact_limits
        ],
    )
    if policy.update_time is not None:
        out.update_time.CopyFrom(timestamp(policy.update_time))
    return out
