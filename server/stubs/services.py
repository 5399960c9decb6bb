"""The three downstream stand-ins, one class each."""

from __future__ import annotations

from custops.audience.v1 import audience_pb2_grpc
from custops.benefit.v1 import benefit_pb2_grpc
from custops.notify.v1 import notify_pb2_grpc


class AudienceStub(audience_pb2_grpc.AudienceServiceServicer):
    pass


class BenefitStub(benefit_pb2_grpc.BenefitServiceServicer):
    pass


class NotificationStub(notify_pb2_grpc.NotificationServiceServicer):
    pass
