"""Daily conversion of a plan, treatment against holdout, each with its 95%
interval, drawn to a PNG. Needs matplotlib (the `plots` extra), which the
service itself does not carry."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt

from custops.plan.v1 import plan_pb2 as pb

Z95 = 1.959963984540054


def draw(effect: pb.PlanEffect, path: str) -> None:
    days = [d.day for d in effect.daily]
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for label, members, counts in (
        (
            "treatment",
            effect.treatment.members,
            [d.treatment_converted_members for d in effect.daily],
        ),
        ("holdout", effect.holdout.members, [d.holdout_converted_members for d in effect.daily]),
    ):
        if not members:
            continue
        rates = [c / members for c in counts]
        margins = [Z95 * math.sqrt(r * (1 - r) / members) for r in rates]
        axes.plot(days, rates, marker="o", label=f"{label} ({members:,} members)")
        axes.fill_between(
            days,
            [r - m for r, m in zip(rates, margins, strict=True)],
            [r + m for r, m in zip(rates, margins, strict=True)],
            alpha=0.2,
        )
    axes.set_title(f"Plan {effect.plan_id}: members converting per day (95% interval)")
    axes.set_ylabel("share of the group")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.1%}")
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
