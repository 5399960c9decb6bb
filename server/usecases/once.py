"""Side-effecting calls made at most once per request id (AIP-155): the
outcome is kept in the request log, in the change's own transaction, and a
retry with the same id gets it back and changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from domain.errors import DuplicateRequest
from domain.plan import Plan
from domain.plan_codec import plan_from_dict, plan_to_dict
from domain.ports import RequestKey, UnitOfWork
from domain.shop_policy import ShopPolicy
from server.persistence.shop_policies import policy_from_row, policy_to_row

T = TypeVar("T")


async def once(
    uow_factory: Callable[[], UnitOfWork],
    shop_id: str,
    key: RequestKey | None,
    change: Callable[[UnitOfWork], Awaitable[T]],
) -> T:
    """Run `change` in one transaction, at most once per request key: a
    retry returns the outcome of the first call and changes nothing."""
    for _attempt in range(2):
        try:
            async with uow_factory() as uow:
                if key is not None:
                    stored = await uow.requests.find(shop_id, key)
                    if stored is not None:
                        return cast(T, outcome_from_dict(stored))
                    # Claimed before the change, so a concurrent retry
                    # waits here and then replays this call's outcome.
                    await uow.requests.reserve(shop_id, key)
                result = await change(uow)
                if key is not None:
                    await uow.requests.complete(shop_id, key, outcome_to_dict(result))
                await uow.commit()
                return result
        except DuplicateRequest:
            # A concurrent call with the same key won; the next pass finds its outcome.
            continue
    raise DuplicateRequest("the request id is being used by a concurrent call; retry")


def outcome_to_dict(result: object) -> dict[str, Any]:
    if result is None:
        return {"kind": "none"}
    if isinstance(result, Plan):
        return {"kind": "plan", "plan": plan_to_dict(result)}
    if isinstance(result, ShopPolicy):
        row = policy_to_row(result)
        stamp = row["update_time"]
        row["update_time"] = stamp.isoformat() if stamp is not None else None
        return {"kind": "shop_policy", "policy": row}
    raise TypeError(f"cannot remember an outcome of type {type(result).__name__}")


def outcome_from_dict(stored: dict[str, Any]) -> object:
    if stored["kind"] == "plan":
        return plan_from_dict(stored["plan"])
    if stored["kind"] == "shop_policy":
        row = dict(stored["policy"])
        stamp = row["update_time"]
        row["update_time"] = datetime.fromisoformat(stamp) if stamp else None
        return policy_from_row(row)
    return None


async def remembered(
    uow_factory: Callable[[], UnitOfWork],
    shop_id: str,
    key: RequestKey | None,
    work: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """The answer of work done outside one database transaction (the task
    engine's store, the token buckets), once per request key: a retry gets
    the first answer back and does nothing. Two first calls at once may both
    do the work (which must be safe twice); the first answer recorded is the
    one both get."""
    if key is None:
        return await work()
    first = await _answer(uow_factory, shop_id, key)
    if first is not None:
        return first
    answer = await work()
    try:
        async with uow_factory() as uow:
            await uow.requests.reserve(shop_id, key)
            await uow.requests.complete(shop_id, key, {"kind": ANSWER, ANSWER: answer})
            await uow.commit()
    except DuplicateRequest:
        return await _answer(uow_factory, shop_id, key) or answer
    return answer


ANSWER = "answer"


async def _answer(
    uow_factory: Callable[[], UnitOfWork], shop_id: str, key: RequestKey
) -> dict[str, Any] | None:
    async with uow_factory() as uow:
        stored = await uow.requests.find(shop_id, key)
    if stored is not None and stored.get("kind") == ANSWER:
        answer: dict[str, Any] = stored[ANSWER]
        return answer
    return None
