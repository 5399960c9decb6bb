"""The benefit platform stand-in's state: templates (versioned), inventory,
instances and idempotency keys, in memory.

Every operation runs to its end without awaiting, so on one event loop it
is atomic: concurrent duplicates of a key see the first one's result, and
stock is checked and taken in one step, never below zero.
"""

from __future__ import annotations

import bisect
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from custops.benefit.v1 import benefit_pb2 as pb
from domain.ports import Clock
from server.downstream.wire import timestamp
from server.stand_ins.benefit_catalog import PRESETS

_MAX_EXPANSION = 1000  # instances one grant may make (quantity x parts x deliveries)
_MAX_DAYS = 3650


class ItemError(Exception):
    def __init__(self, reason: str, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.failure = pb.ItemFailure(reason=reason, message=message, retryable=retryable)


@dataclass
class _Keyed:
    """The first outcome stored under an idempotency key, and what it was for."""

    what: bytes
    result: pb.GrantResult | pb.RecoverResult | pb.BenefitInstance


@dataclass
class BenefitBook:
    clock: Clock
    templates: dict[tuple[str, str], list[pb.BenefitTemplate]] = field(default_factory=dict)
    stock: dict[tuple[str, str], int] = field(default_factory=dict)
    instances: dict[str, pb.BenefitInstance] = field(default_factory=dict)
    keys: dict[tuple[str, str, str], _Keyed] = field(default_factory=dict)
    grants_by_key: dict[tuple[str, str], int] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Instance ids of a restarted stand-in never repeat those it gave before.
    _id_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    # Instance ids by (shop, member) and by shop, in id order: ids are made
    # increasing (one tag, a zero-padded counter), so appending keeps each
    # list sorted and a keyset page is a bisect, not a sort of everything.
    _by_member: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _by_shop: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for preset in PRESETS:
            self.templates[("", preset.template_id)] = [preset]
            self.stock[("", preset.template_id)] = preset.inventory

    # Templates.

    def template(self, shop_id: str, template_id: str, version: int = 0) -> pb.BenefitTemplate:
        versions = self.templates.get((shop_id, template_id)) or self.templates.get(
            ("", template_id)
        )
        if not versions:
            raise ItemError("TEMPLATE_NOT_FOUND", f"no benefit template {template_id!r}")
        if version == 0:
            found = versions[-1]
        elif 0 < version <= len(versions):
            found = versions[version - 1]
        else:
            raise ItemError("VERSION_NOT_FOUND", f"template {template_id} has no version {version}")
        shown = pb.BenefitTemplate()
        shown.CopyFrom(found)
        owner = shop_id if (shop_id, template_id) in self.templates else ""
        shown.inventory = self.stock.get((owner, template_id), 0)
        return shown

    def all_templates(self, shop_id: str, include_presets: bool) -> list[pb.BenefitTemplate]:
        return [
            self.template(shop, template_id)
            for (shop, template_id) in sorted(self.templates)
            if shop == shop_id or (include_presets and shop == "")
        ]

    def create_template(self, shop_id: str, template: pb.BenefitTemplate) -> pb.BenefitTemplate:
        key = (shop_id, template.template_id)
        if not template.template_id or key in self.templates:
            raise ItemError(
                "TEMPLATE_EXISTS", f"template {template.template_id!r} exists or is blank"
            )
        stored = pb.BenefitTemplate()
        stored.CopyFrom(template)
        stored.shop_id, stored.version = shop_id, 1
        self._check_template(shop_id, stored)
        self.templates[key] = [stored]
        self.stock[key] = stored.inventory
        return self.template(shop_id, stored.template_id)

    def update_template(
        self, shop_id: str, template: pb.BenefitTemplate, paths: list[str]
    ) -> pb.BenefitTemplate:
        key = (shop_id, template.template_id)
        if key not in self.templates:
            raise ItemError(
                "TEMPLATE_NOT_FOUND", f"shop {shop_id} has no template {template.template_id!r}"
            )
        fields = pb.BenefitTemplate.DESCRIPTOR.fields_by_name
        for path in paths:
            if path not in fields or path in ("template_id", "shop_id", "version"):
                raise ItemError("BAD_UPDATE_MASK", f"cannot update {path!r}")
        if "inventory" in paths and template.inventory < 0:
            raise ItemError("BAD_TEMPLATE", "inventory must be >= 0")
        new = pb.BenefitTemplate()
        new.CopyFrom(self.templates[key][-1])
        for path in paths:
            if path == "inventory":
                continue
            new.ClearField(path)  # type: ignore[arg-type]
            value = getattr(template, path)
            if path == "components":
                new.components.extend(value)
            elif hasattr(value, "CopyFrom"):
                getattr(new, path).CopyFrom(value)
            else:
                setattr(new, path, value)
        if any(p != "inventory" for p in paths):
            new.version += 1
            self._check_template(shop_id, new)
            self.templates[key].append(new)
        if "inventory" in paths:
            self.stock[key] = template.inventory
        return self.template(shop_id, template.template_id)

    def _check_template(self, shop_id: str, t: pb.BenefitTemplate) -> None:
        kinds = set(pb.BenefitKind.values()) - {pb.BENEFIT_KIND_UNSPECIFIED}
        if t.kind not in kinds:
            raise ItemError("BAD_TEMPLATE", "kind must be one of the benefit kinds")
        if not 0 <= t.validity_days <= _MAX_DAYS or t.inventory < 0:
            raise ItemError("BAD_TEMPLATE", f"validity 0-{_MAX_DAYS} days; inventory >= 0")
        p = t.periodicity
        if not (0 <= p.count <= 120 and 0 <= p.interval_days <= _MAX_DAYS):
            raise ItemError(
                "BAD_TEMPLATE", f"periodicity: count 0-120, interval 0-{_MAX_DAYS} days"
            )
        if t.kind == pb.BENEFIT_KIND_PACKAGE:
            if not t.components:
                raise ItemError("BAD_TEMPLATE", "a package needs components")
            for part in t.components:
                if part.quantity < 1 or part.quantity > _MAX_EXPANSION:
                    raise ItemError("BAD_TEMPLATE", "component quantities must be 1-1000")
                if part.template_id == t.template_id or (
                    self.template(shop_id, part.template_id).kind == pb.BENEFIT_KIND_PACKAGE
                ):
                    raise ItemError("BAD_TEMPLATE", "packages do not nest")
            # Nor may a template become a package while a package contains it.
            for (owner, other), versions in self.templates.items():
                if (
                    owner == shop_id
                    and other != t.template_id
                    and any(c.template_id == t.template_id for c in versions[-1].components)
                ):
                    raise ItemError("BAD_TEMPLATE", f"package {other} contains this template")

    # Grants.

    def grant(self, shop_id: str, item: pb.GrantItem) -> pb.GrantResult:
        what = item.SerializeToString(deterministic=True)
        key = (shop_id, "grant", item.idempotency_key)
        if not item.idempotency_key:
            raise ItemError("IDEMPOTENCY_KEY_REQUIRED", "every grant needs an idempotency key")
        kept = self.keys.get(key)
        if kept is not None:
            if kept.what != what:
                raise ItemError("IDEMPOTENCY_KEY_REUSED", "the key was used for another grant")
            first = pb.GrantResult()
            first.CopyFrom(kept.result)  # type: ignore[arg-type]
            first.status = pb.ITEM_STATUS_DUPLICATE
            return first
        if not item.member_id or item.quantity < 1:
            raise ItemError("INVALID_ITEM", "member_id is required and quantity must be >= 1")
        if (
            item.HasField("valid_from")
            and item.HasField("valid_until")
            and item.valid_until.ToDatetime() <= item.valid_from.ToDatetime()
        ):
            raise ItemError("INVALID_ITEM", "valid_until must be after valid_from")
        template = self.template(shop_id, item.template_id)
        parts = (
            [(self.template(shop_id, c.template_id), c.quantity) for c in template.components]
            if template.kind == pb.BENEFIT_KIND_PACKAGE
            else [(template, 1)]
        )
        retired = next((t for t in (template, *(p for p, _ in parts)) if _retired(t)), None)
        if retired is not None:
            raise ItemError("TEMPLATE_RETIRED", f"template {retired.template_id} is retired")
        needs: dict[tuple[str, str], int] = {}  # stock to take, of limited templates
        count = 0
        for part, per in parts:
            if not part.unlimited:
                owner = shop_id if (shop_id, part.template_id) in self.templates else ""
                stock_key = (owner, part.template_id)
                needs[stock_key] = needs.get(stock_key, 0) + per * item.quantity
            count += per * item.quantity * max(part.periodicity.count, 1)
        if item.quantity > _MAX_EXPANSION or count > _MAX_EXPANSION:
            raise ItemError("TOO_MANY_INSTANCES", f"one grant may make at most {_MAX_EXPANSION}")
        for stock_key, need in needs.items():
            if self.stock.get(stock_key, 0) < need:
                raise ItemError(
                    "OUT_OF_STOCK", f"template {stock_key[1]} has too little stock left"
                )
        # Everything that can fail happens before anything changes: the
        # instances are made first, then stock, instances and key are kept.
        now = self.clock.now()
        made = [
            self._instance(shop_id, item, part, now, k)
            for part, per in parts
            for _ in range(per * item.quantity)
            for k in range(max(part.periodicity.count, 1))
        ]
        for stock_key, need in needs.items():
            self.stock[stock_key] -= need
        for instance in made:
            self.instances[instance.instance_id] = instance
            self._by_member.setdefault((shop_id, instance.member_id), []).append(
                instance.instance_id
            )
            self._by_shop.setdefault(shop_id, []).append(instance.instance_id)
        made = [self.shown(i) for i in made]
        result = pb.GrantResult(
            idempotency_key=item.idempotency_key, status=pb.ITEM_STATUS_SUCCEEDED, instances=made
        )
        self.keys[key] = _Keyed(what, result)
        member_key = (shop_id, item.idempotency_key)
        self.grants_by_key[member_key] = self.grants_by_key.get(member_key, 0) + 1
        return result

    def _instance(
        self, shop_id: str, item: pb.GrantItem, part: pb.BenefitTemplate, now: datetime, k: int
    ) -> pb.BenefitInstance:
        start = now + timedelta(days=k * part.periodicity.interval_days)
        end = start + timedelta(days=part.validity_days or 3650)
        # Valid where the template's validity and the grant's window meet
        # (a window already over makes an instance that is expired at once).
        if item.HasField("valid_from"):
            start = max(start, item.valid_from.ToDatetime(now.tzinfo))
        if item.HasField("valid_until"):
            end = min(end, item.valid_until.ToDatetime(now.tzinfo))
        end = max(start, end)
        instance = pb.BenefitInstance(
            instance_id=f"bi-{self._id_tag}-{next(self._ids):010d}",
            shop_id=shop_id,
            member_id=item.member_id,
            template_id=part.template_id,
            template_version=part.version,
            kind=part.kind,
            quantity=1,
            state=pb.BENEFIT_STATE_UNUSED,
            valid_from=timestamp(start),
            valid_until=timestamp(end),
            grant_time=timestamp(now),
            source=item.source,
            idempotency_key=item.idempotency_key,
            period_index=k,
            display_name=part.display_name,
        )
        return instance

    # The life of an instance.

    def shown(self, instance: pb.BenefitInstance) -> pb.BenefitInstance:
        """A copy, EXPIRED when its validity has passed unused."""
        copy = pb.BenefitInstance()
        copy.CopyFrom(instance)
        if (
            copy.state == pb.BENEFIT_STATE_UNUSED
            and self.clock.now() >= copy.valid_until.ToDatetime(self.clock.now().tzinfo)
        ):
            copy.state = pb.BENEFIT_STATE_EXPIRED
        return copy

    def _owned(self, shop_id: str, instance_id: str) -> pb.BenefitInstance:
        found = self.instances.get(instance_id)
        if found is None or found.shop_id != shop_id:
            raise ItemError("INSTANCE_NOT_FOUND", f"no benefit instance {instance_id!r}")
        return found

    def _once(
        self, shop_id: str, op: str, key: str, what: bytes
    ) -> tuple[tuple[str, str, str], _Keyed | None]:
        if not key:
            raise ItemError("IDEMPOTENCY_KEY_REQUIRED", "an idempotency key is required")
        stored = self.keys.get((shop_id, op, key))
        if stored is not None and stored.what != what:
            raise ItemError("IDEMPOTENCY_KEY_REUSED", "the key was used for another request")
        return (shop_id, op, key), stored

    def recover(self, shop_id: str, item: pb.RecoverItem) -> pb.RecoverResult:
        key, stored = self._once(
            shop_id, "recover", item.idempotency_key, item.instance_id.encode()
        )
        if stored is not None:
            first = pb.RecoverResult()
            first.CopyFrom(stored.result)  # type: ignore[arg-type]
            first.status = pb.ITEM_STATUS_DUPLICATE
            return first
        instance = self._owned(shop_id, item.instance_id)
        if self.shown(instance).state != pb.BENEFIT_STATE_UNUSED:
            raise ItemError("NOT_UNUSED", "only an unused, unexpired benefit can be taken back")
        instance.state = pb.BENEFIT_STATE_RECOVERED
        result = pb.RecoverResult(
            idempotency_key=item.idempotency_key,
            status=pb.ITEM_STATUS_SUCCEEDED,
            instance=self.shown(instance),
        )
        self.keys[key] = _Keyed(item.instance_id.encode(), result)
        return result

    def mark_used(
        self, shop_id: str, instance_id: str, order_id: str, key: str
    ) -> tuple[pb.BenefitInstance, bool]:
        what = json.dumps([instance_id, order_id]).encode()
        stored_key, stored = self._once(shop_id, "use", key, what)
        if stored is not None:
            return self.shown(stored.result), True  # type: ignore[arg-type]
        instance = self._owned(shop_id, instance_id)
        if instance.valid_from.ToDatetime(self.clock.now().tzinfo) > self.clock.now():
            raise ItemError("NOT_YET_VALID", "this delivery of the benefit is not valid yet")
        if not order_id:
            raise ItemError("ORDER_REQUIRED", "order_id is required")
        if self.shown(instance).state != pb.BENEFIT_STATE_UNUSED:
            raise ItemError("NOT_UNUSED", "the benefit is not unused (used, expired or taken back)")
        instance.state, instance.order_id = pb.BENEFIT_STATE_USED, order_id
        instance.use_time.CopyFrom(timestamp(self.clock.now()))
        self.keys[stored_key] = _Keyed(what, instance)
        return self.shown(instance), False

    def replenish(
        self, shop_id: str, instance_id: str, order_id: str, key: str
    ) -> tuple[pb.BenefitInstance, bool]:
        what = json.dumps([instance_id, order_id]).encode()
        stored_key, stored = self._once(shop_id, "replenish", key, what)
        if stored is not None:
            return self.shown(stored.result), True  # type: ignore[arg-type]
        instance = self._owned(shop_id, instance_id)
        if instance.state != pb.BENEFIT_STATE_USED or instance.order_id != order_id:
            raise ItemError("NOT_USED_BY_ORDER", f"the benefit was not used by order {order_id!r}")
        if self.clock.now() >= instance.valid_until.ToDatetime(self.clock.now().tzinfo):
            raise ItemError("EXPIRED", "the benefit has expired; it cannot be given back")
        instance.state = pb.BENEFIT_STATE_UNUSED
        instance.order_id = ""
        instance.ClearField("use_time")
        self.keys[stored_key] = _Keyed(what, instance)
        return self.shown(instance), False

    def instances_page(
        self,
        shop_id: str,
        member_id: str,
        after: str,
        size: int,
        wanted: Callable[[pb.BenefitInstance], bool],
    ) -> tuple[list[pb.BenefitInstance], str]:
        """Up to `size` of the shop's (or one member's) instances that `wanted`
        keeps, in id order after the id `after`, and the next page's token
        ("" after the last): a page costs what it shows and what the filter
        passes over, not the whole book."""
        ids = (
            self._by_member.get((shop_id, member_id), [])
            if member_id
            else self._by_shop.get(shop_id, [])
        )
        page: list[pb.BenefitInstance] = []
        for instance_id in itertools.islice(ids, bisect.bisect_right(ids, after), None):
            instance = self.shown(self.instances[instance_id])
            if not wanted(instance):
                continue
            if len(page) == size:
                return page, page[-1].instance_id
            page.append(instance)
        return page, ""


def _retired(template: pb.BenefitTemplate) -> bool:
    return template.state == pb.BENEFIT_TEMPLATE_STATE_RETIRED
