"""Loading the business products' template files into ProductTemplates.

Templates are TOML files: the built-in ones beside this module, and any in
the folder CUSTOPS_PRODUCT_TEMPLATES names (a new product needs no code).
The preset is written in the plan storage format of domain/plan_codec.py;
fields it leaves out take the defaults of a new draft.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from domain.drafts import validate_spec
from domain.plan import UPDATABLE_FIELDS, FrontOffice, PlanSpec
from domain.plan_codec import spec_from_dict, spec_to_dict
from domain.products import Allowed, ProductTemplate, unknown_components, variation_violations

BUILT_IN = Path(__file__).resolve().parent


class TemplateError(Exception):
    """A template file that cannot be used; the message names the file."""


def load_catalog(*folders: Path) -> dict[str, ProductTemplate]:
    """Every template in the built-in folder and the given ones, by id."""
    catalog: dict[str, ProductTemplate] = {}
    for folder in (BUILT_IN, *folders):
        for path in sorted(folder.glob("*.toml")):
            template = load_template(path)
            if template.template_id in catalog:
                raise TemplateError(f"{path}: template id {template.template_id!r} is taken")
            catalog[template.template_id] = template
    return catalog


def load_template(path: Path) -> ProductTemplate:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        allowed = Allowed(
            **{k: frozenset(data["allowed"].get(k, [])) for k in Allowed.__dataclass_fields__}
        )
        preset = _preset(data["preset"])
        template = ProductTemplate(
            template_id=data["id"],
            display_name=data["display_name"],
            description=data.get("description", ""),
            preset=preset,
            allowed=allowed,
            front_offices=frozenset(FrontOffice(f) for f in data["front_offices"]),
            editable_fields=tuple(data["editable"]),
            headline=data.get("headline", ""),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TemplateError(f"{path}: {exc.__class__.__name__}: {exc}") from exc
    problems = [f"unknown component {c}" for c in unknown_components(allowed)]
    problems += [
        f"editable field {f!r} is not a plan field"
        for f in template.editable_fields
        if f not in UPDATABLE_FIELDS
    ]
    problems += [f"preset {v.field}: {v.description}" for v in validate_spec(preset)]
    problems += [
        f"preset {v.field}: {v.description}" for v in variation_violations(template, preset)
    ]
    if problems:
        raise TemplateError(f"{path}: " + "; ".join(problems))
    return template


def _preset(data: dict[str, Any]) -> PlanSpec:
    base = spec_to_dict(PlanSpec(display_name=data.get("display_name", "")))
    return spec_from_dict(_merge(base, data))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "audience":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
