"""A plan as the shopper's pages show it (the scenario use cases' answer,
which the public API's mapping puts on the wire)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.downstream_ports import TemplateValue
from domain.plan import Plan


@dataclass(frozen=True)
class ApplyingPlan:
    """A plan as a page shows it: its effects and its effect window (the
    one it applies in, or for an upcoming plan the next)."""

    plan: Plan
    window_start: datetime | None
    window_end: datetime | None
    effects: tuple[TemplateValue, ...]
    headline: str
