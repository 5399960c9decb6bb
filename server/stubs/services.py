"""The benefit and notification stand-ins (behaviour to come; UNIMPLEMENTED)."""

from __future__ import annotations

from custops.benefit.v1 import benefit_pb2_grpc
from custops.notify.v1 import notify_pb2_grpc


class BenefitStub(benefit_pb2_grpc.BenefitServiceServicer):
    pass


class NotificationStub(notify_pb2_grpc.NotificationServiceServicer):
    pass
