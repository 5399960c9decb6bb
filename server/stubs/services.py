"""The notification stand-in (behaviour to come; UNIMPLEMENTED)."""

from __future__ import annotations

from custops.notify.v1 import notify_pb2_grpc


class NotificationStub(notify_pb2_grpc.NotificationServiceServicer):
    pass
