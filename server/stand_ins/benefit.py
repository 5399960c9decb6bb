"""The benefit platform's stand-in: custops.benefit.v1.BenefitService over a
BenefitBook, with the stand-ins' capacity and faults.

Batch calls answer per item: an item that cannot be done (out of stock,
unknown template, reused key) fails with its reason and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc

from custops.benefit.v1 import benefit_pb2 as pb
from custops.benefit.v1 import benefit_pb2_grpc
from server.stand_ins.benefit_book import BenefitBook, ItemError
from server.stand_ins.pressure import MAX_BATCH, Pressure

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

Context: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")
R = TypeVar("R", pb.GrantResult, pb.RecoverResult)


class BenefitStub(benefit_pb2_grpc.BenefitServiceServicer):
    def __init__(self, book: BenefitBook, pressure: Pressure) -> None:
        self.book = book
        self.pressure = pressure

    async def BatchGrantBenefits(
        self, request: pb.BatchGrantBenefitsRequest, context: Context
    ) -> pb.BatchGrantBenefitsResponse:
        results = await self._per_item(
            context,
            request.items,
            lambda item: self.book.grant(request.shop_id, item),
            pb.GrantResult,
        )
        return pb.BatchGrantBenefitsResponse(results=results)

    async def BatchRecoverBenefits(
        self, request: pb.BatchRecoverBenefitsRequest, context: Context
    ) -> pb.BatchRecoverBenefitsResponse:
        results = await self._per_item(
            context,
            request.items,
            lambda item: self.book.recover(request.shop_id, item),
            pb.RecoverResult,
        )
        return pb.BatchRecoverBenefitsResponse(results=results)

    async def MarkBenefitUsed(
        self, request: pb.MarkBenefitUsedRequest, context: Context
    ) -> pb.MarkBenefitUsedResponse:
        instance, duplicate = await self._one(context, self.book.mark_used, request)
        return pb.MarkBenefitUsedResponse(instance=instance, duplicate=duplicate)

    async def ReplenishBenefit(
        self, request: pb.ReplenishBenefitRequest, context: Context
    ) -> pb.ReplenishBenefitResponse:
        instance, duplicate = await self._one(context, self.book.replenish, request)
        return pb.ReplenishBenefitResponse(instance=instance, duplicate=duplicate)

    async def BatchGetInventory(
        self, request: pb.BatchGetInventoryRequest, context: Context
    ) -> pb.BatchGetInventoryResponse:
        await _batch_size(context, len(request.template_ids))
        await self.pressure.admit(context, max(len(request.template_ids), 1))
        inventories = []
        for template_id in request.template_ids:
            try:
                t = self.book.template(request.shop_id, template_id)
            except ItemError as exc:
                await _refuse(context, self.pressure, exc)
                raise
            inventories.append(
                pb.Inventory(template_id=template_id, available=t.inventory, unlimited=t.unlimited)
            )
        return pb.BatchGetInventoryResponse(inventories=inventories)

    async def ListBenefitTemplates(
        self, request: pb.ListBenefitTemplatesRequest, context: Context
    ) -> pb.ListBenefitTemplatesResponse:
        await self.pressure.admit(context, 1)
        found = [
            t
            for t in self.book.all_templates(request.shop_id, request.include_presets)
            if not request.kind or t.kind == request.kind
        ]
        page, token = await _page(
            context, found, lambda t: t.template_id, request.page_size, request.page_token
        )
        return pb.ListBenefitTemplatesResponse(templates=page, next_page_token=token)

    async def GetBenefitTemplate(
        self, request: pb.GetBenefitTemplateRequest, context: Context
    ) -> pb.GetBenefitTemplateResponse:
        await self.pressure.admit(context, 1)
        try:
            template = self.book.template(request.shop_id, request.template_id, request.version)
        except ItemError as exc:
            await _refuse(context, self.pressure, exc, grpc.StatusCode.NOT_FOUND)
            raise
        return pb.GetBenefitTemplateResponse(template=template)

    async def CreateBenefitTemplate(
        self, request: pb.CreateBenefitTemplateRequest, context: Context
    ) -> pb.CreateBenefitTemplateResponse:
        try:
            template = self.book.create_template(request.shop_id, request.template)
        except ItemError as exc:
            await _refuse(context, self.pressure, exc)
            raise
        return pb.CreateBenefitTemplateResponse(template=template)

    async def UpdateBenefitTemplate(
        self, request: pb.UpdateBenefitTemplateRequest, context: Context
    ) -> pb.UpdateBenefitTemplateResponse:
        try:
            template = self.book.update_template(
                request.shop_id, request.template, list(request.update_mask.paths)
            )
        except ItemError as exc:
            await _refuse(context, self.pressure, exc)
            raise
        return pb.UpdateBenefitTemplateResponse(template=template)

    async def ListBenefitInstances(
        self, request: pb.ListBenefitInstancesRequest, context: Context
    ) -> pb.ListBenefitInstancesResponse:
        await self.pressure.admit(context, 1)
        size = await _page_size(context, request.page_size, request.page_token)
        page, token = self.book.instances_page(
            request.shop_id,
            request.member_id,
            request.page_token,
            size,
            lambda i: (
                (not request.state or i.state == request.state)
                and (not request.source or i.source == request.source)
            ),
        )
        return pb.ListBenefitInstancesResponse(instances=page, next_page_token=token)

    async def _one(
        self,
        context: Context,
        change: Callable[[str, str, str, str], tuple[pb.BenefitInstance, bool]],
        request: pb.MarkBenefitUsedRequest | pb.ReplenishBenefitRequest,
    ) -> tuple[pb.BenefitInstance, bool]:
        """Use or give back one instance for an order, once per idempotency key."""
        await self.pressure.admit(context, 1)
        try:
            instance, duplicate = change(
                request.shop_id, request.instance_id, request.order_id, request.idempotency_key
            )
        except ItemError as exc:
            await _refuse(context, self.pressure, exc)
            raise
        self._count(pb.ITEM_STATUS_DUPLICATE if duplicate else pb.ITEM_STATUS_SUCCEEDED)
        await self.pressure.deliver(context)
        return instance, duplicate

    async def _per_item(
        self,
        context: Context,
        items: Sequence[Any],
        do: Callable[[Any], R],
        result: Callable[..., R],
    ) -> list[R]:
        """Each item of a batch on its own: one that cannot be done fails with
        its reason and the others go on."""
        await _batch_size(context, len(items))
        await self.pressure.admit(context, len(items))
        results = []
        for item in items:
            try:
                outcome = do(item)
            except ItemError as exc:
                self.pressure.item_failed(exc.failure.reason)
                outcome = result(
                    idempotency_key=item.idempotency_key,
                    status=pb.ITEM_STATUS_FAILED,
                    failure=exc.failure,
                )
            else:
                self._count(outcome.status)
            results.append(outcome)
        await self.pressure.deliver(context)
        return results

    def _count(self, status: int) -> None:
        if status == pb.ITEM_STATUS_DUPLICATE:
            self.pressure.item_duplicate()
        else:
            self.pressure.item_succeeded()


async def _batch_size(context: Context, size: int) -> None:
    if size > MAX_BATCH:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} items per call")


async def _refuse(
    context: Context,
    pressure: Pressure,
    exc: ItemError,
    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
) -> None:
    pressure.item_failed(exc.failure.reason)
    if exc.failure.reason.endswith("NOT_FOUND"):
        code = grpc.StatusCode.NOT_FOUND
    await context.abort(code, f"{exc.failure.reason}: {exc.failure.message}")


async def _page_size(context: Context, size: int, token: str) -> int:
    """The page size asked for, within bounds; a bad size or token refused."""
    if size < 0:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be >= 0")
    if token and not (token.isascii() and token.isprintable() and len(token) <= 128):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token: not a token of ours")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


async def _page(
    context: Context, items: list[T], key: Callable[[T], str], size: int, token: str
) -> tuple[list[T], str]:
    """A keyset page: the items whose key follows the token (the last key of
    the previous page), so items changing between pages are neither skipped
    nor repeated."""
    size = await _page_size(context, size, token)
    after = sorted((i for i in items if key(i) > token), key=key)
    page = after[:size]
    return page, (key(page[-1]) if len(after) > size else "")
