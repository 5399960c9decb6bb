"""domain.downstream_ports.BenefitCatalog, BenefitLedger and BenefitGranter over
custops.benefit.v1.BenefitService."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import timestamp_pb2

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from domain.downstream_ports import (
    Grant,
    Granted,
    GrantedBenefit,
    Recover,
    Refusal,
    Stock,
    TemplateInfo,
    TemplateValue,
)
from domain.plan import BenefitKind
from domain.runs import recover_key
from server.downstream.errors import CallFailed, call_errors, domain_errors
from server.downstream.wire import BENEFIT_KINDS, timestamp

SYSTEM = "benefit platform"
# An instance taken back now, or before under the same key.
_TAKEN_BACK = (benefit_pb2.ITEM_STATUS_SUCCEEDED, benefit_pb2.ITEM_STATUS_DUPLICATE)


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
                    _recover_request(
                        shop_id,
                        # One key per instance: a retried end recovers nothing twice.
                        [
                            Recover(recover_key(source, i.instance_id), i.instance_id, reason)
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

    async def grant(self, shop_id: str, grants: Sequence[Grant]) -> list[Granted]:
        request = benefit_pb2.BatchGrantBenefitsRequest(shop_id=shop_id)
        add = request.items.add  # made in place: a made item would be copied in
        for g in grants:
            add(
                idempotency_key=g.key,
                member_id=g.member_id,
                template_id=g.template_id,
                quantity=g.quantity,
                source=g.source,
                valid_from=_timestamp(g.valid_from) if g.valid_from is not None else None,
                valid_until=_timestamp(g.valid_until) if g.valid_until is not None else None,
            )
        with call_errors(SYSTEM):
            response = await self._stub.BatchGrantBenefits(request)
        return [
            Granted(_refusal(r.failure))
            if r.status == benefit_pb2.ITEM_STATUS_FAILED
            else Granted(None, tuple([_granted(i) for i in r.instances]))
            for r in response.results
        ]

    async def recover(self, shop_id: str, items: Sequence[Recover]) -> list[Refusal | None]:
        with call_errors(SYSTEM):
            response = await self._stub.BatchRecoverBenefits(_recover_request(shop_id, items))
        return [None if r.status in _TAKEN_BACK else _refusal(r.failure) for r in response.results]

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


# The grants of a run share their validity: each distinct instant is turned
# into a Timestamp once (the message's constructor copies it, so sharing is safe).
_timestamp = functools.lru_cache(maxsize=4096)(timestamp)


def _granted(instance: benefit_pb2.BenefitInstance) -> GrantedBenefit:
    # By position, in GrantedBenefit's field order: one per granted instance,
    # and a named tuple is made in half the time without keywords.
    return GrantedBenefit(
        instance.instance_id,
        instance.shop_id,
        instance.member_id,
        instance.template_id,
        instance.template_version,
        BENEFIT_KINDS.get(instance.kind, BenefitKind.UNSPECIFIED),
        instance.display_name,
        instance.quantity,
        _instant(instance.valid_from) if instance.HasField("valid_from") else None,
        _instant(instance.valid_until) if instance.HasField("valid_until") else None,
        _instant(instance.grant_time),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant(value: timestamp_pb2.Timestamp) -> datetime:
    """As Timestamp.ToDatetime(tzinfo=UTC), at a fraction of its cost: three
    per granted instance, a run's hottest conversion (not memoized: each
    instance has a grant time of its own)."""
    return _EPOCH + timedelta(0, value.seconds, value.nanos // 1000)  # days, s, µs


def _recover_request(
    shop_id: str, items: Sequence[Recover]
) -> benefit_pb2.BatchRecoverBenefitsRequest:
    return benefit_pb2.BatchRecoverBenefitsRequest(
        shop_id=shop_id,
        items=[
            benefit_pb2.RecoverItem(
                idempotency_key=i.key, instance_id=i.instance_id, reason=i.reason
            )
            for i in items
        ],
    )


def _refusal(failure: benefit_pb2.ItemFailure) -> Refusal:
    return Refusal(failure.reason or "FAILED", failure.retryable)
