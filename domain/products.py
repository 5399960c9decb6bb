"""Business products as templates over a registry of components.

A product (birthday, holiday, member day, ...) is data: which components it
allows — time calculators for the three time notions, audience conditions,
actions — and the plan a merchant starts from. A new product that reuses
components is a new template file; one that needs new behaviour registers
one new component here.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import audience as a
from domain import calculators, term
from domain.errors import FieldViolation
from domain.plan import Action, FrontOffice, GrantBenefits, PlanSpec, SendMessage

# The registries: component name -> what it stands for in the model. Time
# calculators are domain.calculators' (a term expression's type, or a
# calculator registered by name such as "payday").
AUDIENCE_CONDITIONS: dict[str, type] = {
    "levels": a.Levels,
    "birthday": a.Birthday,
    "follower": a.Follower,
    "browsed_not_bought": a.BrowsedNotBought,
    "carted_not_paid": a.CartedNotPaid,
    "tags": a.Tags,
    "members": a.Members,
    "all_of": a.AllOf,
    "any_of": a.AnyOf,
    "not": a.Not,
}
ACTION_EXECUTORS: dict[str, type] = {
    "grant_benefit": GrantBenefits,
    "send_message": SendMessage,
}
TIME_NOTIONS = ("effective", "term", "execution")


@dataclass(frozen=True)
class Allowed:
    """The components a product may use, by registry name."""

    effective: frozenset[str]
    term: frozenset[str]
    execution: frozenset[str]
    audience: frozenset[str]
    actions: frozenset[str]


@dataclass(frozen=True)
class ProductTemplate:
    template_id: str
    display_name: str
    description: str
    preset: PlanSpec
    allowed: Allowed
    front_offices: frozenset[FrontOffice]
    editable_fields: tuple[str, ...]
    # What a shopper's page leads a plan of this product with ("Member day").
    headline: str = ""


def unknown_components(allowed: Allowed) -> list[str]:
    """Names a template uses that nobody registered."""
    out = [
        f"{notion}: {name}"
        for notion in TIME_NOTIONS
        for name in getattr(allowed, notion)
        if name not in calculators.names()
    ]
    out += [f"audience: {n}" for n in allowed.audience if n not in AUDIENCE_CONDITIONS]
    out += [f"actions: {n}" for n in allowed.actions if n not in ACTION_EXECUTORS]
    return out


def variation_violations(
    t: ProductTemplate, spec: PlanSpec, path: str = "plan"
) -> list[FieldViolation]:
    """Where a plan departs from what its product allows."""
    out: list[FieldViolation] = []
    if spec.product_id != t.preset.product_id:
        out.append(
            FieldViolation(
                f"{path}.product_id",
                f"is fixed to {t.preset.product_id} by template {t.template_id}",
            )
        )
    if spec.front_office not in t.front_offices:
        names = ", ".join(sorted(f.value for f in t.front_offices))
        out.append(
            FieldViolation(f"{path}.front_office", f"template {t.template_id} offers {names}")
        )
    for notion in TIME_NOTIONS:
        text = getattr(spec.time, notion)
        names = getattr(t.allowed, notion)
        if not text:
            continue
        try:
            calculator = calculators.parse(text).name
        except (term.TermExpressionError, calculators.CalculatorError):
            continue  # the plan's own validation names it
        if calculator not in names:
            out.append(
                FieldViolation(
                    f"{path}.time.{notion}",
                    f"{calculator} is not allowed by template "
                    f"{t.template_id}; allowed: {', '.join(sorted(names)) or 'none'}",
                )
            )
    if spec.audience is not None:
        used = _conditions(spec.audience)
        refused = sorted(n for n in used if n not in t.allowed.audience)
        if refused:
            out.append(
                FieldViolation(
                    f"{path}.audience",
                    f"template {t.template_id} does not allow {', '.join(refused)}; "
                    f"allowed: {', '.join(sorted(t.allowed.audience))}",
                )
            )
    for i, action in enumerate(spec.actions):
        name = _action_name(action)
        if name not in t.allowed.actions:
            out.append(
                FieldViolation(
                    f"{path}.actions[{i}]",
                    f"{name} is not allowed by template {t.template_id}; "
                    f"allowed: {', '.join(sorted(t.allowed.actions))}",
                )
            )
    return out


def _conditions(rule: a.Rule) -> set[str]:
    names = {n for n, kind in AUDIENCE_CONDITIONS.items() if isinstance(rule, kind)}
    match rule:
        case a.AllOf(rules) | a.AnyOf(rules):
            for sub in rules:
                names |= _conditions(sub)
        case a.Not(sub):
            names |= _conditions(sub)
    return names


def _action_name(action: Action) -> str:
    return next(n for n, kind in ACTION_EXECUTORS.items() if isinstance(action, kind))
