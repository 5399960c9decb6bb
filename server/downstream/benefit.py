"""domain.ports.BenefitCatalog over custops.benefit.v1.BenefitService."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from domain.ports import Stock
from domain.runs import recover_key
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

    async def recover_unused(self, shop_id: str, source: str, reason: str, limit: int) -> int:
        recovered = 0
        while recovered < limit:
            try:
                page = await self._stub.ListBenefitInstances(
                    benefit_pb2.ListBenefitInstancesRequest(
                        shop_id=shop_id,
                        source=source,
                        state=benefit_pb2.BENEFIT_STATE_UNUSED,
                        page_size=min(500, limit - recovered),
                    )
                )
                if not page.instances:
                    return recovered
                reply = await self._stub.BatchRecoverBenefits(
                    benefit_pb2.BatchRecoverBenefitsRequest(
                        shop_id=shop_id,
                        items=[
                            benefit_pb2.RecoverItem(
                                # One key per instance: a retried end recovers nothing twice.
                                idempotency_key=recover_key(source, i.instance_id),
                                instance_id=i.instance_id,
                                reason=reason,
                            )
                            for i in page.instances
                        ],
                    )
                )
            except grpc.aio.AioRpcError as exc:
                raise translate(SYSTEM, exc) from exc
            done = sum(r.status == benefit_pb2.ITEM_STATUS_SUCCEEDED for r in reply.results)
            if done == 0:
                return recovered  # what is left cannot be taken back (expired meanwhile)
            recovered += done
        return recovered
