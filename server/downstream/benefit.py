"""domain.ports.BenefitCatalog over custops.benefit.v1.BenefitService."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from domain.ports import Stock
from server.downstream.errors import translate

SYSTEM = "benefit platform"


class GrpcBenefitCatalog:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = benefit_pb2_grpc.BenefitServiceStub(channel)

    async def inventory(self, shop_id: str, template_ids: Sequence[str]) -> list[Stock]:
        if not template_ids:
            return []
        request = benefit_pb2.BatchGetInventoryRequest(shop_id=shop_id, template_ids=template_ids)
        try:
            response = await self._stub.BatchGetInventory(request)
        except grpc.aio.AioRpcError as exc:
            raise translate(SYSTEM, exc) from exc
        return [Stock(i.template_id, i.available, i.unlimited) for i in response.inventories]
