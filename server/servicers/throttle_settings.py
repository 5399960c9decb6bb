"""The throttle calls of OperationPlanService (thin: proto <-> domain): the
downstream rate limits, platform-wide and per shop."""

from __future__ import annotations

from typing import Any

from custops.plan.v1 import plan_pb2 as pb
from domain.errors import FieldViolation, require
from domain.mask_paths import JSON_NOTE, json_path
from server import call_context
from server.mapping.plan import DOWNSTREAM_NAMES
from server.servicers.requests import request_key, shop_id_violations
from server.usecases.throttle import Throttle, ThrottleUseCases


class ThrottleSettingCalls:
    """Mixed into the plan service: reading and changing throttle settings."""

    _throttle: ThrottleUseCases

    async def GetThrottleSettings(
        self, request: pb.GetThrottleSettingsRequest, context: Any
    ) -> pb.GetThrottleSettingsResponse:
        if request.shop_id:
            require(shop_id_violations(request.shop_id))
        # The platform-wide buckets are for callers of every shop (or when
        # nobody is asked for credentials).
        caller = call_context.caller.get()
        found = await self._throttle.get(
            request.shop_id, with_platform=caller is None or caller.every_shop
        )
        return pb.GetThrottleSettingsResponse(settings=[_throttle_to_proto(t) for t in found])

    async def UpdateThrottleSetting(
        self, request: pb.UpdateThrottleSettingRequest, context: Any
    ) -> pb.UpdateThrottleSettingResponse:
        new = request.setting
        downstream = DOWNSTREAM_NAMES.get(new.downstream, "")
        key = request_key("UpdateThrottleSetting", request)
        if new.shop_id:
            require(shop_id_violations(new.shop_id) + _mask_violations(request, SHOP_FIELDS))
            changed = await self._throttle.update_weight(
                downstream, new.shop_id, new.weight, new.etag, key
            )
            return pb.UpdateThrottleSettingResponse(setting=_throttle_to_proto(changed))
        require(_mask_violations(request, PLATFORM_FIELDS))
        paths = list(request.update_mask.paths) or list(PLATFORM_FIELDS)
        changed = await self._throttle.update(
            downstream,
            new.rate_per_second if "rate_per_second" in paths else None,
            int(new.burst) if "burst" in paths else None,
            new.etag,
            key,
        )
        return pb.UpdateThrottleSettingResponse(setting=_throttle_to_proto(changed))


# What an update may change: a downstream's rate and burst, or a shop's weight.
PLATFORM_FIELDS = ("rate_per_second", "burst")
SHOP_FIELDS = ("weight",)


def _mask_violations(
    request: pb.UpdateThrottleSettingRequest, allowed: tuple[str, ...]
) -> list[FieldViolation]:
    whose = "a shop's share (with shop_id)" if allowed == SHOP_FIELDS else "a downstream's setting"
    return [
        FieldViolation(
            f"update_mask.paths[{i}]",
            f"{' or '.join(json_path(a) for a in allowed)} ({JSON_NOTE}): {whose} has only those",
        )
        for i, path in enumerate(request.update_mask.paths)
        if path not in allowed
    ]


_DOWNSTREAMS_BACK = {name: number for number, name in DOWNSTREAM_NAMES.items()}


def _throttle_to_proto(t: Throttle) -> pb.ThrottleSetting:
    return pb.ThrottleSetting(
        downstream=_DOWNSTREAMS_BACK[t.downstream],
        rate_per_second=0.0 if t.shop_id else t.settings.rate,
        burst=0 if t.shop_id else t.settings.capacity,
        weight=t.weight if t.shop_id else 0.0,
        shop_id=t.shop_id,
        effective_rate_per_second=t.effective_rate,
        etag=t.etag,
    )
