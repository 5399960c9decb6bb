"""domain.ports.BenefitCatalog over custops.benefit.v1.BenefitService."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from domain.plan import BenefitKind
from domain.ports import Stock, TemplateInfo, TemplateValue
from domain.runs import recover_key
from server.downstream.errors import CallFailed, call_errors, domain_errors
from server.downstream.wire import BENEFIT_KINDS

SYSTEM = "benefit platform"


class GrpcBenefitCatalog:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = benefit_pb2_grpc.BenefitServiceStub(channel)

    async def inventory(self, shop_id: str, template_ids: Sequence[str]) -> list[Stock]:
        if not template_ids:
            return []
        request = benefit_pb2.BatchGetInventoryRequest(shop_id=shop_id, template_ids=template_ids)
        with domain_errors(SYSTEM):
            response = await self._stub.BatchGetInventory(request)
        return [Stock(i.template_id, i.available, i.unlimited) for i in response.inventories]

    async def describe(self, shop_id: str, template_ids: Sequence[str]) -> dict[str, TemplateInfo]:
        async def one(template_id: str) -> TemplateInfo | None:
            request = benefit_pb2.GetBenefitTemplateRequest(
                shop_id=shop_id, template_id=template_id
            )
            try:
                with call_errors(SYSTEM):
                    found = (await self._stub.GetBenefitTemplate(request)).template
            except CallFailed as failed:
                if failed.code is grpc.StatusCode.NOT_FOUND:
                    return None
                raise failed.domain_error() from failed
            return TemplateInfo(
                found.template_id,
                BENEFIT_KINDS.get(found.kind, BenefitKind.UNSPECIFIED),
                found.state == benefit_pb2.BENEFIT_TEMPLATE_STATE_RETIRED,
            )

        found = await asyncio.gather(*(one(t) for t in dict.fromkeys(template_ids)))
        return {info.template_id: info for info in found if info is not None}

    async def recover_unused(self, shop_id: str, source: str, reason: str, limit: int) -> list[str]:
        recovered: list[str] = []
        while len(recovered) < limit:
            with domain_errors(SYSTEM):
                page = await self._stub.ListBenefitInstances(
                    benefit_pb2.ListBenefitInstancesRequest(
                        shop_id=shop_id,
                        source=source,
                        state=benefit_pb2.BENEFIT_STATE_UNUSED,
                        page_size=min(500, limit - len(recovered)),
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
            done = [
                i.instance_id
                for i, r in zip(page.instances, reply.results, strict=True)
                if r.status == benefit_pb2.ITEM_STATUS_SUCCEEDED
            ]
            if not done:
                return recovered  # what is left cannot be taken back (expired meanwhile)
            recovered += done
        return recovered

    async def mark_used(
        self, shop_id: str, instance_id: str, order_id: str, key: str, timeout: float | None
    ) -> None:
        request = benefit_pb2.MarkBenefitUsedRequest(
            shop_id=shop_id, instance_id=instance_id, order_id=order_id, idempotency_key=key
        )
        with domain_errors(SYSTEM):
            await self._stub.MarkBenefitUsed(request, timeout=timeout)

    async def replenish(
        self,
        shop_id: str,
        instance_id: str,
        order_id: str,
        key: str,
        reason: str,
        timeout: float | None,
    ) -> None:
        request = benefit_pb2.ReplenishBenefitRequest(
            shop_id=shop_id,
            instance_id=instance_id,
            order_id=order_id,
            idempotency_key=key,
            reason=reason,
        )
        with domain_errors(SYSTEM):
            await self._stub.ReplenishBenefit(request, timeout=timeout)

    async def template(self, shop_id: str, template_id: str, version: int) -> TemplateValue:
        request = benefit_pb2.GetBenefitTemplateRequest(
            shop_id=shop_id, template_id=template_id, version=version
        )
        with domain_errors(SYSTEM):
            found = (await self._stub.GetBenefitTemplate(request)).template
        return TemplateValue(
            template_id=found.template_id,
            version=found.version,
            kind=BENEFIT_KINDS.get(found.kind, BenefitKind.UNSPECIFIED),
            display_name=found.display_name,
            amount=found.value.amount,
            basis_points=found.value.basis_points,
            threshold_amount=found.value.threshold_amount,
            description=found.value.description,
        )
