"""A plan's draft: made, checked and changed by field mask.

A draft may be incomplete (merchants save as they go), but its shape is
checked every time it is made or changed: what it holds is within bounds,
names real time zones, and parses.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from domain.audience import validate_rule
from domain.calculators import violations as time_violations
from domain.errors import FieldViolation, require
from domain.mask_paths import JSON_NOTE, json_path, json_paths
from domain.plan import (
    MAX_ACTIONS,
    MAX_BENEFITS_PER_ACTION,
    MAX_DESCRIPTION_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PARAMS,
    PRODUCT_ID,
    UPDATABLE_FIELDS,
    Action,
    BenefitKind,
    FrequencyWindow,
    GrantBenefits,
    MessageChannel,
    Plan,
    PlanLimits,
    PlanSpec,
    PlanState,
    SendMessage,
)
from domain.zones import is_time_zone

_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")


def new_plan(
    shop_id: str, plan_id: str, spec: PlanSpec, by: str, at: datetime, template_id: str = ""
) -> Plan:
    require(validate_spec(spec))
    return Plan(
        shop_id=shop_id,
        plan_id=plan_id,
        spec=spec,
        state=PlanState.DRAFT,
        revision=1,
        create_by=by,
        create_time=at,
        update_by=by,
        update_time=at,
        template_id=template_id,
    )


def apply_mask(spec: PlanSpec, changes: PlanSpec, paths: list[str]) -> PlanSpec:
    """`spec` with the fields named by `paths` taken from `changes`."""
    violations = []
    if not paths:
        violations.append(
            FieldViolation("update_mask", "must name at least one field, e.g. 'displayName'")
        )
    for i, path in enumerate(paths):
        if path not in UPDATABLE_FIELDS:
            violations.append(
                FieldViolation(
                    f"update_mask.paths[{i}]",
                    f"'{json_path(path)}' cannot be updated; updatable ({JSON_NOTE}): "
                    f"{json_paths(UPDATABLE_FIELDS)}",
                )
            )
    require(violations)
    updated = spec
    for path in paths:
        updated = _copy_path(updated, changes, path.split("."))
    require(validate_spec(updated))
    return updated


def _copy_path(target: Any, source: Any, parts: list[str]) -> Any:
    """`target` with the attribute at `parts` taken from `source`."""
    head, rest = parts[0], parts[1:]
    value = getattr(source, head)
    if rest:
        value = _copy_path(getattr(target, head), value, rest)
    return replace(target, **{head: value})


def validate_spec(spec: PlanSpec, path: str = "plan") -> list[FieldViolation]:
    """Every shape problem of a draft, each named by its field path."""
    out: list[FieldViolation] = []
    name = spec.display_name.strip()
    if not name or len(spec.display_name) > MAX_NAME_LENGTH:
        out.append(
            FieldViolation(f"{path}.display_name", f"required, 1 to {MAX_NAME_LENGTH} characters")
        )
    if len(spec.description) > MAX_DESCRIPTION_LENGTH:
        out.append(
            FieldViolation(f"{path}.description", f"at most {MAX_DESCRIPTION_LENGTH} characters")
        )
    if spec.product_id and not PRODUCT_ID.fullmatch(spec.product_id):
        out.append(
            FieldViolation(
                f"{path}.product_id",
                "a product id: a lower-case letter, then up to 31 of a-z, 0-9 and _",
            )
        )
    out += _time_zone(spec.time_zone, f"{path}.time_zone")
    if spec.audience is not None:
        out += validate_rule(spec.audience, f"{path}.audience")
    for attr in ("effective", "term", "execution"):
        value = getattr(spec.time, attr)
        if value:
            out += [
                FieldViolation(f"{path}.time.{attr}.{v.field}", v.description)
                for v in time_violations(value)
            ]
    if len(spec.actions) > MAX_ACTIONS:
        out.append(FieldViolation(f"{path}.actions", f"at most {MAX_ACTIONS} actions"))
    for i, action in enumerate(spec.actions):
        out += _action(action, f"{path}.actions[{i}]")
    out += _limits(spec.limits, f"{path}.limits")
    return out


def _time_zone(zone: str, path: str) -> list[FieldViolation]:
    if not is_time_zone(zone):
        shown = zone if len(zone) <= 40 else zone[:40] + "..."
        return [
            FieldViolation(path, f"must be an IANA time zone such as Asia/Shanghai, got {shown!r}")
        ]
    return []


def _identifier(value: str, path: str) -> list[FieldViolation]:
    if not value.strip() or len(value) > MAX_ID_LENGTH:
        return [FieldViolation(path, f"required, 1 to {MAX_ID_LENGTH} characters")]
    return []


def _action(action: Action, path: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    match action:
        case GrantBenefits(benefits):
            where = f"{path}.grant_benefit.benefits"
            if not benefits:
                out.append(FieldViolation(where, "must grant at least one benefit"))
            if len(benefits) > MAX_BENEFITS_PER_ACTION:
                out.append(FieldViolation(where, f"at most {MAX_BENEFITS_PER_ACTION} benefits"))
            for j, grant in enumerate(benefits):
                out += _identifier(grant.template_id, f"{where}[{j}].template_id")
                if grant.kind is BenefitKind.UNSPECIFIED:
                    out.append(FieldViolation(f"{where}[{j}].kind", "required"))
                if grant.quantity < 1:
                    out.append(
                        FieldViolation(
                            f"{where}[{j}].quantity", f"must be >= 1, got {grant.quantity}"
                        )
                    )
        case SendMessage(channel, template_id, params):
            where = f"{path}.send_message"
            if channel is MessageChannel.UNSPECIFIED:
                out.append(FieldViolation(f"{where}.channel", "required"))
            out += _identifier(template_id, f"{where}.template_id")
            if len(params) > MAX_PARAMS:
                out.append(FieldViolation(f"{where}.params", f"at most {MAX_PARAMS} parameters"))
    return out


def _limits(limits: PlanLimits, path: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if limits.frequency.max_times < 0:
        out.append(FieldViolation(f"{path}.frequency.max_times", "must be >= 0"))
    if limits.frequency.max_times > 0 and limits.frequency.window is FrequencyWindow.UNSPECIFIED:
        out.append(FieldViolation(f"{path}.frequency.window", "required when max_times is set"))
    if limits.total_budget < 0:
        out.append(FieldViolation(f"{path}.total_budget", "must be >= 0 (0 = no budget)"))
    if not math.isfinite(limits.rate_override) or limits.rate_override < 0:
        out.append(
            FieldViolation(f"{path}.rate_override", "must be a number >= 0 (0 = downstream's rate)")
        )
    quiet = limits.quiet_hours
    if quiet is not None:
        for attr in ("start", "end"):
            value = getattr(quiet, attr)
            if not _HH_MM.match(value):
                out.append(
                    FieldViolation(f"{path}.quiet_hours.{attr}", f"must be HH:MM, got {value!r}")
                )
        if quiet.start == quiet.end and _HH_MM.match(quiet.start):
            out.append(FieldViolation(f"{path}.quiet_hours.end", "must differ from start"))
    return out
