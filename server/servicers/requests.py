"""Checks and helpers shared by every servicer: shop ids, paging, request ids,
the product a list asks for."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message

from custops.plan.v1 import plan_pb2 as pb
from domain.access import is_shop_id
from domain.errors import FieldViolation, InvalidArgument
from domain.plan import PRODUCT_ID
from domain.ports import RequestKey
from server.mapping.plan import BUSINESS_PRODUCTS

P = TypeVar("P")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PLAN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")


def shop_id_violations(shop_id: str) -> list[FieldViolation]:
    if not is_shop_id(shop_id):
        return [FieldViolation("shop_id", "required: 1-64 letters, digits, '_' or '-'")]
    return []


def plan_id_violations(plan_id: str, field: str = "plan_id") -> list[FieldViolation]:
    if not PLAN_ID.match(plan_id):
        return [FieldViolation(field, "required: 1-64 letters, digits, '_' or '-'")]
    return []


# Ids of members, benefit instances and orders: the other systems' ids.
# Run ids as runs are named (domain.runs): a letter and 20 hex digits.
RUN_ID = re.compile(r"^[a-z][0-9a-f]{20}\Z")
MEMBER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")


def id_violations(field: str, value: str) -> list[FieldViolation]:
    if not MEMBER_ID.match(value):
        return [FieldViolation(field, "required: 1-64 letters, digits or '_.:-'")]
    return []


def request_id_violations(request_id: str) -> list[FieldViolation]:
    """An optional request id (AIP-155): empty, or a key a retry repeats."""
    if request_id and not _REQUEST_ID.match(request_id):
        return [FieldViolation("request_id", "1-128 letters, digits or '._:-' (a UUID is fine)")]
    return []


def page_size_violations(page_size: int) -> list[FieldViolation]:
    if page_size < 0:
        return [FieldViolation("page_size", f"must be >= 0 (0 = default), got {page_size}")]
    return []


def effective_page_size(page_size: int) -> int:
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def request_key(operation: str, request: Message) -> RequestKey | None:
    """The idempotency key of a side-effecting request, or None without request_id."""
    request_id: str = getattr(request, "request_id", "")
    if not request_id:
        return None
    if violations := request_id_violations(request_id):
        raise InvalidArgument(violations)
    digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    return RequestKey(operation, request_id, digest)


def encode_page_token(position: dict[str, Any], scope: str) -> str:
    """An opaque token; `scope` binds it to the query's shop and filters."""
    raw = json.dumps({"p": position, "s": _scope_hash(scope)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, scope: str, read: Callable[[dict[str, Any]], P]) -> P | None:
    """The position in a token, converted by `read`; a token that is not
    ours, is for another query, or does not convert is INVALID_ARGUMENT."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["s"] == _scope_hash(scope) and isinstance(data["p"], dict):
            return read(data["p"])
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    raise InvalidArgument(
        [
            FieldViolation(
                "page_token",
                "not a token from a previous response to the same query "
                "(same shop and filters); start again without it",
            )
        ],
        reason="INVALID_PAGE_TOKEN",
    )


def time_id_token(at: datetime, item_id: str, scope: str) -> str:
    """A token for keyset paging by (time, id), the order of every list here."""
    return encode_page_token({"t": at.isoformat(), "id": item_id}, scope)


def time_id_reader(valid_id: re.Pattern[str]) -> Callable[[dict[str, Any]], tuple[datetime, str]]:
    """Reads a `time_id_token` position back; a naive time or an id not
    matching `valid_id` is not one of ours."""

    def read(position: dict[str, Any]) -> tuple[datetime, str]:
        at = datetime.fromisoformat(position["t"])
        item_id = position["id"]
        if at.tzinfo is None or not isinstance(item_id, str) or not valid_id.match(item_id):
            raise ValueError("not a position of this list")
        return at, item_id

    return read


def _scope_hash(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def product_filter(
    request: pb.ListPlansRequest | pb.ListPlanTemplatesRequest, violations: list[FieldViolation]
) -> str:
    """The product a list asks for ("" for any): its id, or the deprecated enum's."""
    if request.product_id:
        if not PRODUCT_ID.fullmatch(request.product_id):
            violations.append(FieldViolation("product_id", "a product id, e.g. member_day"))
        return request.product_id
    product = BUSINESS_PRODUCTS.get(request.business_product)
    if product is None:
        violations.append(
            FieldViolation("business_product", f"unknown value {request.business_product}")
        )
        return ""
    return str(product)
